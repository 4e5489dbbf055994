"""MLPerf Automotive's 2D-detection harness, the code paths whose files ``ssd`` reads, rewritten from
its description (SPEC section 10) so that tests make those files as the harness makes them.

``preprocess.py`` parses each Cognata CSV with ``csv.reader`` and ``ast.literal_eval``, keeps the
objects the reference's rules keep, and pickles ``{'img': image[None].numpy(), 'gt_boxes':
torch.tensor(rows).numpy()}`` with ``pickle.dump``'s default protocol. ``rows`` hold the parsed
Python values, so the array's dtype follows the CSV: int64 when every box is whole, float32 when any
value is fractional, and a float32 ``[0]`` array when no object is kept.
"""
from __future__ import annotations

import ast
import csv
import pickle
from pathlib import Path

import numpy as np
import torch

IGNORED_CLASSES = (2, 25, 31)
# cognata_labels.label_map: Cognata class id -> label of the fixed 15-class map
LABEL_MAP = {0: 0, 28: 1, 29: 2, 33: 3, 8: 4, 36: 5, 13: 6, 11: 7, 35: 8, 14: 9, 9: 10, 48: 11, 10: 12, 46: 13, 44: 14}


def harness_gt_rows(annotation_csv: Path, label_map: dict[int, int] = LABEL_MAP) -> list[list]:
    """The ``gt_boxes`` rows the harness builds for one frame, as Python values."""
    with open(annotation_csv) as handle:
        rows = list(csv.reader(handle))
    header, annotations = rows[0], rows[1:]
    box_at, class_at, distance_at = header.index("bounding_box_2D"), header.index("object_class"), header.index("center_distance")
    kept = []
    for annotation in annotations:
        box = ast.literal_eval(annotation[box_at])
        width, height = box[2] - box[0], box[3] - box[1]
        raw_class = ast.literal_eval(annotation[class_at])
        distance = ast.literal_eval(annotation[distance_at])
        if width * height < 50 or int(raw_class) in IGNORED_CLASSES or height < 8 or width < 8 or distance > 300:
            continue
        kept.append([box[0], box[1], box[2], box[3], label_map[raw_class], 0, 0])
    return kept


def harness_gt_boxes(rows: list[list]) -> np.ndarray:
    """``torch.tensor(rows).numpy()``: the dtype torch infers from the Python values."""
    return torch.tensor(rows).numpy()


def write_harness_frame(path: Path, image: torch.Tensor, rows: list[list]) -> None:
    """One ``val_<i>.pkl`` as ``preprocess.py`` writes it (``image``: the validation transform's ``[3, H, W]``)."""
    with open(path, "wb") as handle:
        pickle.dump({"img": image.unsqueeze(0).numpy(), "gt_boxes": harness_gt_boxes(rows)}, handle)
