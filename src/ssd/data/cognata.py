"""MLCommons Cognata in its real layout: index, object filters, split and dataset.

The layout and its scan are in :mod:`ssd.data.cognata_index`; this module applies the dataset's
rules to the index, in memory.

Object rules, in order: a class in ``ignore_classes`` is left out; a box with no area is a problem;
``center_distance`` > 300, width or height < 8 or area < 50 (raw box, as in the reference) are left
out. A frame is kept when one of its objects passes these rules -- the reference's criterion, which
the split depends on. Then a class missing from the label map is a problem, and a box reaching
outside the image is clipped (a problem) or, wholly outside, dropped. Frames with no object left
after that are left out too.
"""
from __future__ import annotations

import csv
import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ssd.data.cognata_index import CognataIndex, scan_cognata
from ssd.data.dataset import Annotations, DetectionDataset, Transform
from ssd.data.labels import LabelMap, cognata_fixed, first_appearance
from ssd.data.problems import DataError, Problem, ProblemLog

if TYPE_CHECKING:
    from ssd.config import Config
    from ssd.data.kinds import DatasetOptions

log = logging.getLogger(__name__)

# Cognata class ids left out unless a config's dataset section says otherwise
DEFAULT_IGNORE_CLASSES = (2, 25, 31)
MIN_AREA = 50.0
MIN_SIDE = 8.0
MAX_DISTANCE = 300.0
SPLIT_SEED = 5
TRAIN_FRACTION = 0.8
SPLITS = ("train", "val", "all")
# boxes reaching less than this far outside the image are clipped without a report (rounding)
CLIP_TOLERANCE = 1.0
COGNATA_LABELS = cognata_fixed()

# reason codes of objects, see describe_object()
KEPT, IGNORED, ZERO_AREA, TOO_FAR, TOO_SMALL, UNKNOWN_CLASS, OUTSIDE = range(7)
# codes that are bad input (problems) rather than the dataset's rules
PROBLEM_CODES = (ZERO_AREA, UNKNOWN_CLASS, OUTSIDE)
REASON_NAMES = {
    IGNORED: "ignored class",
    ZERO_AREA: "zero-area box",
    TOO_FAR: "too far",
    TOO_SMALL: "too small",
    UNKNOWN_CLASS: "unknown class id",
    OUTSIDE: "box outside the image",
}


# -- object rules, label map and split --------------------------------------------------------------
@dataclass
class Selection:
    """The object rules applied to an index.

    ``reasons [O]`` holds a code per object (:data:`KEPT` or why not), ``clipped [O]`` marks kept
    boxes that were clipped, ``boxes [O, 4]`` are clipped to the image, ``labels [O]`` are -1 for
    objects not kept. ``frames [F]`` marks frames passing the reference's criterion (the split's
    population); ``usable [F]`` those with an object left after cleaning.
    """

    label_map: LabelMap
    reasons: np.ndarray
    clipped: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    frames: np.ndarray
    usable: np.ndarray

    def problems(self, index: CognataIndex) -> list[Problem]:
        """Bad input found by the rules (zero-area, unknown-class, outside and clipped boxes)."""
        flagged = np.flatnonzero(np.isin(self.reasons, PROBLEM_CODES) | self.clipped)
        frames = np.searchsorted(index.offsets, flagged, side="right") - 1
        return [Problem(str(index.root / index.annotations[f]), describe_object(index, self, int(k))) for k, f in zip(flagged, frames)]

    def filtered_counts(self) -> Counter[str]:
        """Objects and frames left out by the rules (not problems), per reason."""
        counts = Counter({REASON_NAMES[code]: int(n) for code, n in zip(*np.unique(self.reasons, return_counts=True)) if code not in (KEPT, *PROBLEM_CODES)})
        counts["frame without a kept object"] = int((~self.usable).sum())
        return +counts


def describe_object(index: CognataIndex, selection: Selection, k: int) -> str:
    """The reason text of object ``k`` (``"kept"`` for kept objects that were not clipped)."""
    code = int(selection.reasons[k])
    class_id = int(index.class_ids[k])
    x1, y1, x2, y2 = (float(v) for v in index.boxes[k])
    height, width = (int(v) for v in index.sizes[np.searchsorted(index.offsets, k, side="right") - 1])
    box = f"[{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
    if code == KEPT:
        return f"box outside the image, clipped: {box} to {width}x{height}" if selection.clipped[k] else "kept"
    name = index.class_names.get(class_id, "?")
    details = {
        IGNORED: f"ignored class: {class_id} ({name})",
        ZERO_AREA: f"zero-area box: {box}",
        TOO_FAR: f"too far: center_distance {float(index.distances[k]):g} > {MAX_DISTANCE:g}",
        TOO_SMALL: f"too small: {x2 - x1:g}x{y2 - y1:g} px (needs sides >= {MIN_SIDE:g}, area >= {MIN_AREA:g})",
        UNKNOWN_CLASS: f"unknown class id: {class_id} ({name}) is not in the label map",
        OUTSIDE: f"box outside the image: {box} lies outside {width}x{height}",
    }
    return details[code]


def select_objects(index: CognataIndex, ignore_classes: Sequence[int] = DEFAULT_IGNORE_CLASSES, label_map: LabelMap | None = None) -> Selection:
    """Apply the object rules (module docstring); ``label_map`` None builds the first-appearance map."""
    reasons = np.zeros(len(index.class_ids), dtype=np.int8)
    width_height = index.boxes[:, 2:] - index.boxes[:, :2]
    area = width_height[:, 0].astype(np.float64) * width_height[:, 1]
    ignored = np.isin(index.class_ids, np.asarray(ignore_classes, dtype=np.int64))
    for code, mask in (
        (IGNORED, ignored),
        (ZERO_AREA, (width_height <= 0).any(axis=1)),
        (TOO_FAR, index.distances > MAX_DISTANCE),
        (TOO_SMALL, (width_height < MIN_SIDE).any(axis=1) | (area < MIN_AREA)),
    ):
        reasons[(reasons == KEPT) & mask] = code
    frame_of = index.frame_of_object
    frames = np.zeros(len(index), dtype=bool)
    frames[frame_of[reasons == KEPT]] = True

    if label_map is None:  # reference order: every non-ignored row of the kept frames, in file order
        appearing = index.class_ids[frames[frame_of] & ~ignored]
        label_map = first_appearance(appearing.tolist(), index.class_names)
    labels = label_map.labels_of(index.class_ids)
    reasons[(reasons == KEPT) & (labels <= 0)] = UNKNOWN_CLASS

    sizes = index.sizes[frame_of].astype(np.float32)  # (H, W) per object
    limits = np.concatenate([sizes[:, ::-1], sizes[:, ::-1]], axis=1)
    boxes = np.clip(index.boxes, 0.0, limits)
    clipped_w, clipped_h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    reasons[(reasons == KEPT) & ((clipped_w <= 0) | (clipped_h <= 0))] = OUTSIDE
    overshoot = np.maximum(-index.boxes[:, :2], index.boxes[:, 2:] - limits[:, 2:]).max(axis=1)
    clipped = (reasons == KEPT) & (overshoot > CLIP_TOLERANCE)

    usable = np.zeros(len(index), dtype=bool)
    usable[frame_of[reasons == KEPT]] = True
    return Selection(label_map, reasons, clipped, boxes, np.where(reasons == KEPT, labels, -1), frames, usable)


def split_frames(count: int, split: str, seed: int = SPLIT_SEED, train_fraction: float = TRAIN_FRACTION) -> list[int]:
    """Positions of a split in a list of ``count`` frames (the reference's split).

    The list is shuffled with ``random.Random(seed)``; the first ``round(train_fraction * count)``
    are ``train``, the rest ``val``; ``all`` keeps the list in order.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}: expected one of {', '.join(SPLITS)}")
    if split == "all":
        return list(range(count))
    order = list(range(count))
    random.Random(seed).shuffle(order)
    cut = round(train_fraction * count)
    return order[:cut] if split == "train" else order[cut:]


@dataclass(frozen=True)
class ListedFrame:
    """One row of a file list: the image path and, when the list has an ``ann`` column, its annotation CSV
    (both relative to the dataset root, as posix paths)."""

    image: str
    annotation: str | None = None


def _relative(cell: str) -> str:
    return Path(cell.strip().lstrip("/\\")).as_posix()


def read_file_list(path: str | Path) -> list[ListedFrame]:
    """The rows of a CSV such as MLPerf's ``val_set.csv`` / ``calibration_set.csv``, in order.

    The harness reads them with ``csv.DictReader``: a header row, columns found by name (``img``,
    ``ann``), blank lines skipped. A file whose first row does not name ``img`` is read as a list of
    image paths in its first column. Row ``i`` is sample ``i``, so a row without an image path is an
    error rather than a row left out (every later sample would shift).
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # -sig: a BOM is no column name
            rows = [(number, row) for number, row in enumerate(csv.reader(handle), start=1) if any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read file list: {exc}") from exc
    image_at, annotation_at = 0, None
    header = [cell.strip() for cell in rows[0][1]] if rows else []
    if "img" in header:
        image_at, annotation_at = header.index("img"), header.index("ann") if "ann" in header else None
        rows = rows[1:]
    entries = []
    for line, row in rows:
        image = row[image_at].strip() if len(row) > image_at else ""
        if not image:
            raise DataError(f"{path}, line {line}: no image path (sample indices follow the rows, so none may be left out)")
        annotation = row[annotation_at].strip() if annotation_at is not None and len(row) > annotation_at else ""
        entries.append(ListedFrame(_relative(image), _relative(annotation) if annotation else None))
    if not entries:
        raise DataError(f"{path}: file list names no image")
    return entries


class CognataDataset(DetectionDataset):
    """Cognata frames of one split (or of an explicit file list).

    Args:
        root: the dataset folder holding the scenario folders.
        split: ``train``, ``val`` or ``all`` (ignored when ``file_list`` is given).
        folders, cameras: scenarios and cameras to use; empty = every one found.
        ignore_classes: Cognata class ids left out.
        label_map: the label map, by default the fixed 15-class one; ``None`` numbers classes by
            first appearance (then save ``dataset.label_map.to_dict()`` with the checkpoint and
            pass it back for evaluation).
        file_list: CSV of image paths (e.g. MLPerf's validation list) used instead of the split.
        transform: applied to ``(image, target)``; None = normalisation at the original size.
        strict: raise :class:`DataError` on the first bad input instead of recording it.
        cache_dir: where the index cache goes when ``root`` is read-only.
        workers: processes for the first CSV scan (default: CPU count, at most 8).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "all",
        *,
        folders: Sequence[str] = (),
        cameras: Sequence[str] = (),
        ignore_classes: Sequence[int] = DEFAULT_IGNORE_CLASSES,
        label_map: LabelMap | None = COGNATA_LABELS,
        file_list: str | Path | None = None,
        transform: Transform | None = None,
        strict: bool = False,
        cache_dir: str | Path | None = None,
        workers: int | None = None,
    ):
        problems = ProblemLog(strict)
        index = scan_cognata(root, folders, cameras, cache_dir, workers)
        problems.report_all(index.problems)
        selection = select_objects(index, ignore_classes, label_map)
        problems.report_all(selection.problems(index))

        if file_list is not None:
            chosen = self._from_list(index, selection, file_list)
        else:
            candidates = np.flatnonzero(selection.frames)
            chosen = [int(candidates[i]) for i in split_frames(len(candidates), split) if selection.usable[candidates[i]]]
        if not chosen:
            raise DataError(
                f"{index.root}: no usable frame ({split if file_list is None else file_list}; {len(index)} paired frames "
                f"scanned in {', '.join(folders) or 'all scenarios'} / {', '.join(cameras) or 'all cameras'}; {len(problems)} problems)"
            )
        kept = selection.reasons == KEPT
        per_frame = [np.flatnonzero(kept[index.offsets[f] : index.offsets[f + 1]]) + index.offsets[f] for f in chosen]
        annotations = Annotations.from_lists(
            paths=[index.images[f] for f in chosen],
            sizes=[tuple(index.sizes[f]) for f in chosen],
            image_ids=range(len(chosen)),
            boxes=[selection.boxes[k] for k in per_frame],
            labels=[selection.labels[k] for k in per_frame],
            attributes={"distance": [index.distances[k] for k in per_frame]},
        )
        super().__init__(
            index.root, annotations, selection.label_map, range(selection.label_map.num_classes), transform, problems, selection.filtered_counts()
        )
        source = split if file_list is None else Path(file_list).name
        log.info("cognata %s at %s: %d frames, %d objects, %s", source, index.root, len(self), len(annotations.labels), problems.summary())

    @staticmethod
    def _from_list(index: CognataIndex, selection: Selection, file_list: str | Path) -> list[int]:
        """The listed frames, in the list's order: sample ``i`` is the list's row ``i``, as MLPerf's
        harness numbers them. A frame without a kept object stays (no ground truth: its detections
        are false positives); a listed frame that is not in the dataset is an error, since every
        later sample would shift against the list."""
        position = {path: i for i, path in enumerate(index.images)}
        chosen = []
        for row, listed in enumerate(read_file_list(file_list)):
            frame = position.get(listed.image)
            if frame is None:
                raise DataError(
                    f"{file_list}: entry {row} ({index.root / listed.image}) is not a frame of the dataset (image with its annotation CSV); "
                    "sample indices follow the list, so every listed frame must be there"
                )
            if listed.annotation is not None and listed.annotation != index.annotations[frame]:
                raise DataError(
                    f"{file_list}: entry {row} lists {listed.annotation} as the annotation of {listed.image}, whose annotation "
                    f"in the dataset is {index.annotations[frame]}; the harness would score that frame against the listed file"
                )
            chosen.append(frame)
        empty = sum(not selection.usable[f] for f in chosen)
        if empty:
            log.info("%s: %d listed frames have no kept object; kept as samples without ground truth", Path(file_list).name, empty)
        return chosen


def config_selection(config: Config | None, label_map: LabelMap | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What a config's ``dataset`` section selects: scenarios, cameras, ignored classes and the label map.

    The label map is ``label_map`` (a checkpoint's, as a :class:`LabelMap` or its dict), else the
    fixed 15-class map when the config's ``use_label_info`` holds (default), else None: numbered by
    first appearance. Without a config: every scenario and camera, the defaults.
    """
    if isinstance(label_map, Mapping):
        label_map = LabelMap.from_dict(label_map)
    if config is None:
        return {"folders": (), "cameras": (), "ignore_classes": DEFAULT_IGNORE_CLASSES, "label_map": label_map or COGNATA_LABELS}
    section = config.dataset
    if label_map is None and section.use_label_info:
        label_map = COGNATA_LABELS
    ignore_classes = DEFAULT_IGNORE_CLASSES if section.ignore_classes is None else section.ignore_classes
    return {"folders": section.folders, "cameras": section.cameras, "ignore_classes": ignore_classes, "label_map": label_map}


def build_cognata(data_path: str | Path, split: str, config: Config, options: DatasetOptions) -> CognataDataset:
    """The Cognata builder of :mod:`ssd.data.kinds`: the config's selection (:func:`config_selection`).

    ``options.train`` changes nothing but the transform (every frame has a kept object).
    """
    return CognataDataset(
        data_path, split, **config_selection(config, options.label_map), file_list=options.file_list,
        transform=options.transform, strict=options.strict, cache_dir=options.cache_dir, workers=options.workers,
    )
