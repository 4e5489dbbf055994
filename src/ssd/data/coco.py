"""COCO 2017 in its standard layout.

::

    <root>/annotations/instances_{train,val}2017.json
    <root>/{train,val}2017/<file_name>

Category ids (sparse, 1..90) map to contiguous labels 1..C-1 in ascending id order; results go
back through :attr:`DetectionDataset.category_of_label`. Image ids are COCO's own, so results
can be written in COCO results format. Crowd boxes stay out of training targets but are part of
:meth:`coco_ground_truth`. Images without boxes are skipped for training and kept for evaluation.
"""
from __future__ import annotations

import json
import logging
import math
import os
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ssd.data.dataset import Annotations, DetectionDataset, Transform
from ssd.data.labels import LabelMap, from_coco_categories
from ssd.data.problems import DataError, Problem, ProblemLog
from ssd.errors import parameter

if TYPE_CHECKING:
    from ssd.config import Config
    from ssd.data.kinds import DatasetOptions

log = logging.getLogger(__name__)

SPLITS = ("train", "val")
# boxes reaching less than this far outside the image are clipped without a report: COCO's own
# annotations overshoot by rounding
CLIP_TOLERANCE = 1.0


def annotation_file(root: str | Path, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{split}2017.json"


def image_folder(root: str | Path, split: str) -> Path:
    return Path(root) / f"{split}2017"


def load_json(path: Path) -> dict[str, Any]:
    """A COCO annotation file, checked for the three lists; raises :class:`DataError` naming it."""
    if not path.is_file():
        raise DataError(f"{path}: annotation file does not exist")
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable JSON file: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations", "categories")):
        raise DataError(f"{path}: expected a JSON object with 'images', 'annotations' and 'categories' lists")
    return data


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class CocoDataset(DetectionDataset):
    """One COCO 2017 split.

    Args:
        root: folder holding ``annotations/`` and the image folders.
        split: ``train`` or ``val``.
        train: skip images without (non-crowd) boxes, as training needs; default ``split == "train"``.
        transform: applied to ``(image, target)``; None = normalisation at the original size.
        strict: raise :class:`DataError` on the first bad input instead of recording it.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        *,
        train: bool | None = None,
        transform: Transform | None = None,
        strict: bool = False,
    ):
        if split not in SPLITS:
            raise DataError(f"unknown COCO split {split!r}: expected one of {', '.join(SPLITS)}")
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: dataset folder does not exist")
        train = split == "train" if train is None else train
        json_path, folder = annotation_file(root, split), image_folder(root, split)
        data = load_json(json_path)
        try:
            label_map = from_coco_categories(data["categories"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{json_path}: malformed 'categories': {exc}") from exc

        problems = ProblemLog(strict)
        images = self._images(data["images"], json_path, folder, problems)
        listed = {e["id"] for e in data["images"] if isinstance(e, dict) and isinstance(e.get("id"), int)}
        objects = self._objects(data["annotations"], images, listed, label_map, json_path, folder, problems)

        filtered: Counter[str] = Counter()
        paths, sizes, ids, boxes, labels, crowd, areas = [], [], [], [], [], [], []
        for image_id in sorted(images):
            entry = images[image_id]
            rows = objects.get(image_id, [])
            filtered["crowd box (evaluation only)"] += sum(r[2] for r in rows)
            if train and not any(not r[2] for r in rows):
                filtered["image without boxes (skipped in training)"] += 1
                continue
            paths.append(f"{folder.name}/{entry['file_name']}")
            sizes.append((entry["height"], entry["width"]))
            ids.append(image_id)
            boxes.append(np.array([r[0] for r in rows], np.float32).reshape(-1, 4))
            labels.append(np.array([r[1] for r in rows], np.int64))
            crowd.append(np.array([r[2] for r in rows], bool))
            areas.append(np.array([r[3] for r in rows], np.float32))
        if not paths:
            raise DataError(f"{root}: no usable image in {json_path.name} ({len(problems)} problems)")
        annotations = Annotations.from_lists(paths, sizes, ids, boxes, labels, crowd, areas)
        super().__init__(root, annotations, label_map, label_map.category_ids, transform, problems, +filtered)
        log.info("coco %s at %s: %d images, %d boxes, %s", split, root, len(self), len(annotations.labels), problems.summary())

    @staticmethod
    def _images(entries: list[Any], json_path: Path, folder: Path, problems: ProblemLog) -> dict[int, dict[str, Any]]:
        """Valid image entries whose files exist, by id; bad or missing ones become problems."""
        on_disk = {e.name for e in os.scandir(folder) if e.is_file()} if folder.is_dir() else set()
        images: dict[int, dict[str, Any]] = {}
        for entry in entries:
            valid = (
                isinstance(entry, dict)
                and isinstance(entry.get("id"), int)
                and isinstance(entry.get("file_name"), str)
                and all(isinstance(entry.get(k), int) and entry[k] > 0 for k in ("width", "height"))
            )
            if not valid:
                problems.report(Problem(str(json_path), f"malformed image entry: {json.dumps(entry)[:200]}"))
            elif entry["id"] in images:
                problems.report(Problem(str(json_path), f"duplicate image id: {entry['id']}"))
            elif entry["file_name"] not in on_disk:
                problems.report(Problem(str(folder / entry["file_name"]), "annotated image without image file"))
            else:
                images[entry["id"]] = entry
        listed = {e["file_name"] for e in entries if isinstance(e, dict)}
        for name in sorted(on_disk - listed):
            problems.report(Problem(str(folder / name), f"image file not in {json_path.name}"))
        return images

    @staticmethod
    def _objects(
        entries: list[Any], images: dict[int, dict[str, Any]], listed: set[int], label_map: LabelMap, json_path: Path, folder: Path, problems: ProblemLog
    ) -> dict[int, list[tuple[list[float], int, bool, float]]]:
        """Valid annotations as (xyxy pixels, label, iscrowd, area) per image id."""
        label_of = label_map.label_of_category
        objects: dict[int, list[tuple[list[float], int, bool, float]]] = defaultdict(list)
        for entry in entries:
            image_id = entry.get("image_id") if isinstance(entry, dict) else None
            if not isinstance(image_id, int) or image_id not in images:
                if not isinstance(image_id, int) or image_id not in listed:  # an unusable image's go quietly
                    problems.report(Problem(str(json_path), f"annotation for an unknown image id: {json.dumps(entry)[:200]}"))
                continue
            image = images[image_id]
            where = str(folder / image["file_name"])
            name = f"annotation {entry.get('id')}"
            bbox = entry.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
                problems.report(Problem(where, f"malformed bbox: {name}: {bbox!r}"))
                continue
            label = label_of.get(entry.get("category_id"), 0) if isinstance(entry.get("category_id"), int) else 0
            if label <= 0:
                problems.report(Problem(where, f"unknown category id: {name}: {entry.get('category_id')!r}"))
                continue
            x, y, w, h = (float(v) for v in bbox)
            if w <= 0 or h <= 0:
                problems.report(Problem(where, f"zero-area box: {name}: {bbox}"))
                continue
            width, height = image["width"], image["height"]
            box = [min(max(x, 0.0), width), min(max(y, 0.0), height), min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)]
            if box[2] <= box[0] or box[3] <= box[1]:
                problems.report(Problem(where, f"box outside the image: {name}: {bbox} lies outside {width}x{height}"))
                continue
            if max(-x, -y, x + w - width, y + h - height) > CLIP_TOLERANCE:
                problems.report(Problem(where, f"box outside the image, clipped: {name}: {bbox} to {width}x{height}"))
            area = float(entry["area"]) if _number(entry.get("area")) else (box[2] - box[0]) * (box[3] - box[1])
            objects[image_id].append((box, label, bool(entry.get("iscrowd", 0)), area))
        return objects


def build_coco(data_path: str | Path, split: str, config: Config, options: DatasetOptions) -> CocoDataset:
    """The COCO builder of :mod:`ssd.data.kinds`: the labels come from the annotation file's categories.

    A checkpoint's ``label_map`` is not applied: commands compare it with the dataset's
    (:func:`ssd.checkpoint.check_dataset_fits`). COCO has no file lists; there is no index to cache.
    """
    if options.file_list is not None:
        raise DataError(f"{parameter('file_list')} {options.file_list}: file lists are for Cognata; COCO splits are given by their annotation files")
    return CocoDataset(data_path, split, train=options.train, transform=options.transform, strict=options.strict)
