"""MLCommons Cognata in its real layout: index, object filters, split and dataset.

Layout (spec section 2)::

    <root>/<scenario>/<camera>_png/<frame>.png
    <root>/<scenario>/<camera>_ann/<frame>.csv      columns looked up by name

Startup scans each (scenario, camera) folder once: images and CSVs are paired by frame name (an
unpaired file is a problem, never a shift), PNG headers give the image sizes and the CSVs are parsed
(in parallel processes when there are many). The parsed rows are cached per folder
(:mod:`ssd.data.index_cache`), unfiltered, so filters, label maps and splits are applied in memory.

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
import math
import os
import random
import struct
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssd.config import DEFAULT_IGNORE_CLASSES
from ssd.data.dataset import Annotations, DetectionDataset, Transform
from ssd.data.index_cache import IndexCache, fingerprint
from ssd.data.labels import LabelMap, cognata_fixed, first_appearance
from ssd.data.problems import CorruptImageError, DataError, Problem, ProblemLog

log = logging.getLogger(__name__)

IMAGE_SUFFIX = "_png"
ANNOTATION_SUFFIX = "_ann"
REQUIRED_COLUMNS = ("object_class", "object_class_name", "bounding_box_2D", "center_distance")
MIN_AREA = 50.0
MIN_SIDE = 8.0
MAX_DISTANCE = 300.0
SPLIT_SEED = 5
TRAIN_FRACTION = 0.8
SPLITS = ("train", "val", "all")
# boxes reaching less than this far outside the image are clipped without a report (rounding)
CLIP_TOLERANCE = 1.0
# uncached frames from which the CSV scan is spread over processes
PARALLEL_MIN_FRAMES = 512
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
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


# -- reading one frame ----------------------------------------------------------------------------
def read_png_size(path: str | Path) -> tuple[int, int]:
    """(H, W) from a PNG header; raises :class:`CorruptImageError` for a file that is not a PNG."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(24)
    except OSError as exc:
        raise CorruptImageError(f"cannot read: {exc.strerror or exc}") from exc
    if len(header) < 24 or header[:8] != _PNG_SIGNATURE or header[12:16] != b"IHDR":
        raise CorruptImageError("not a PNG file (bad or truncated header)")
    width, height = struct.unpack(">II", header[16:24])
    if width == 0 or height == 0:
        raise CorruptImageError("PNG header gives an empty image")
    return height, width


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"[x1, y1, x2, y2]"`` -> four finite floats; ``ValueError`` otherwise (no ``eval``)."""
    inner = text.strip()
    if len(inner) < 2 or inner[0] + inner[-1] not in ("[]", "()"):
        raise ValueError(f"bounding_box_2D {text!r} is not [x1, y1, x2, y2]")
    parts = inner[1:-1].split(",")
    if len(parts) != 4:
        raise ValueError(f"bounding_box_2D {text!r} has {len(parts)} values, expected 4")
    values = tuple(float(p) for p in parts)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"bounding_box_2D {text!r} is not finite")
    return values  # type: ignore[return-value]


def _parse_int(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(f"object_class {text!r} is not an integer")
    return int(value)


@dataclass
class FrameScan:
    """One frame's parsed CSV rows (unfiltered) and the problems met; ``size`` None = unusable frame."""

    size: tuple[int, int] | None
    class_ids: list[int] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)


def scan_frame(root: str, image_rel: str, csv_rel: str) -> FrameScan:
    """Read one frame's PNG header and CSV. Module-level so worker processes can run it."""
    try:
        size = read_png_size(os.path.join(root, image_rel))
    except CorruptImageError as exc:
        return FrameScan(None, problems=[(image_rel, f"corrupt image: {exc}")])
    scan = FrameScan(size)
    try:
        with open(os.path.join(root, csv_rel), newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return FrameScan(None, problems=[(csv_rel, "empty annotation file: no header row")])
            header = [h.strip() for h in header]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                return FrameScan(None, problems=[(csv_rel, f"missing column: {', '.join(missing)}")])
            ci, ni, bi, di = (header.index(c) for c in REQUIRED_COLUMNS)
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    scan.problems.append((csv_rel, f"malformed row: line {reader.line_num} has {len(row)} fields, the header {len(header)}"))
                    continue
                try:
                    class_id, box, distance = _parse_int(row[ci]), parse_box(row[bi]), float(row[di])
                except ValueError as exc:
                    scan.problems.append((csv_rel, f"malformed row: line {reader.line_num}: {exc}"))
                    continue
                scan.class_ids.append(class_id)
                scan.boxes.append(box)
                scan.distances.append(distance)
                scan.names.setdefault(class_id, row[ni].strip())
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return FrameScan(None, problems=[(csv_rel, f"unreadable annotation file: {exc}")])
    return scan


def _scan_frames(root: str, pairs: list[tuple[str, str]], workers: int | None) -> list[FrameScan]:
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    if workers <= 1 or len(pairs) < PARALLEL_MIN_FRAMES:
        return [scan_frame(root, image, ann) for image, ann in pairs]
    log.info("scanning %d annotation files with %d processes", len(pairs), workers)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        images, anns = zip(*pairs)
        return list(pool.map(scan_frame, [root] * len(pairs), images, anns, chunksize=max(1, len(pairs) // (workers * 8))))


# -- the index of a whole selection -----------------------------------------------------------------
@dataclass
class CognataIndex:
    """Every paired frame of the scanned folders, sorted by image path, with its parsed CSV rows.

    Frame ``i`` owns rows ``offsets[i]:offsets[i + 1]`` of ``class_ids``, ``boxes`` (xyxy pixels as
    written) and ``distances``. ``problems`` are the scan's bad inputs (unpaired files, corrupt
    headers, unreadable CSVs, malformed rows).
    """

    root: Path
    images: list[str]
    annotations: list[str]
    sizes: np.ndarray  # [F, 2] (H, W)
    offsets: np.ndarray  # [F + 1]
    class_ids: np.ndarray  # [O] int64
    boxes: np.ndarray  # [O, 4] float32
    distances: np.ndarray  # [O] float32
    class_names: dict[int, str]
    problems: list[Problem]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def frame_of_object(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.images)), np.diff(self.offsets))


def _list_files(folder: Path, suffix: str) -> dict[str, os.DirEntry]:
    """Frame name -> entry of the ``*suffix`` files in ``folder`` (empty when it does not exist)."""
    if not folder.is_dir():
        return {}
    with os.scandir(folder) as entries:
        return {e.name[: -len(suffix)]: e for e in entries if e.name.endswith(suffix) and e.is_file()}


def _camera_names(scenario: Path) -> list[str]:
    """Cameras with an image or an annotation folder in ``scenario``."""
    names = set()
    for child in scenario.iterdir():
        for suffix in (IMAGE_SUFFIX, ANNOTATION_SUFFIX):
            if child.name.endswith(suffix) and child.is_dir():
                names.add(child.name[: -len(suffix)])
    return sorted(names)


def _discover(root: Path, folders: Sequence[str], cameras: Sequence[str]) -> tuple[list[tuple[str, str]], list[Problem]]:
    """(scenario, camera) folders to scan, sorted; configured ones that are missing are problems."""
    problems = []
    if folders:
        scenarios = sorted(set(folders))
        for name in scenarios:
            if not (root / name).is_dir():
                problems.append(Problem(str(root / name), "missing scenario folder"))
        scenarios = [s for s in scenarios if (root / s).is_dir()]
    else:
        scenarios = sorted(p.name for p in root.iterdir() if p.is_dir() and _camera_names(p))
    selected = []
    for scenario in scenarios:
        for camera in sorted(set(cameras)) if cameras else _camera_names(root / scenario):
            if not (root / scenario / f"{camera}{IMAGE_SUFFIX}").is_dir() and not (root / scenario / f"{camera}{ANNOTATION_SUFFIX}").is_dir():
                problems.append(Problem(str(root / scenario / f"{camera}{IMAGE_SUFFIX}"), "missing camera folder"))
                continue
            selected.append((scenario, camera))
    return selected, problems


def scan_cognata(
    root: str | Path,
    folders: Sequence[str] = (),
    cameras: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> CognataIndex:
    """Index the frames of ``folders`` x ``cameras`` under ``root`` (all that exist when empty).

    Raises :class:`DataError` naming ``root`` when it is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder does not exist")
    selected, problems = _discover(root, folders, cameras)
    cache = IndexCache(cache_dir)
    parts: dict[tuple[str, str], tuple[dict, dict[str, np.ndarray]]] = {}
    pending = []  # folders to scan: (scenario, camera, key, pairs, pairing problems)
    for scenario, camera in selected:
        png_dir, ann_dir = root / scenario / f"{camera}{IMAGE_SUFFIX}", root / scenario / f"{camera}{ANNOTATION_SUFFIX}"
        pngs, csvs = _list_files(png_dir, ".png"), _list_files(ann_dir, ".csv")
        key = fingerprint([(f"png/{n}", e.stat()) for n, e in pngs.items()] + [(f"ann/{n}", e.stat()) for n, e in csvs.items()])
        cached = cache.load(root / scenario, camera, key)
        if cached is not None:
            parts[(scenario, camera)] = cached
            continue
        pairing = [Problem(f"{scenario}/{png_dir.name}/{n}.png", "image without annotation file") for n in sorted(pngs.keys() - csvs.keys())]
        pairing += [Problem(f"{scenario}/{ann_dir.name}/{n}.csv", "annotation file without image") for n in sorted(csvs.keys() - pngs.keys())]
        frames = sorted(pngs.keys() & csvs.keys())
        pairs = [(f"{scenario}/{png_dir.name}/{n}.png", f"{scenario}/{ann_dir.name}/{n}.csv") for n in frames]
        pending.append((scenario, camera, key, pairs, pairing))

    scans = _scan_frames(str(root), [pair for job in pending for pair in job[3]], workers)
    position = 0
    for scenario, camera, key, pairs, pairing in pending:
        part = _pack(pairs, scans[position : position + len(pairs)], pairing)
        position += len(pairs)
        cache.save(root / scenario, camera, key, *part)
        parts[(scenario, camera)] = part
    return _merge(root, [parts[s] for s in selected], problems)


def _pack(pairs: list[tuple[str, str]], scans: list[FrameScan], pairing: list[Problem]) -> tuple[dict, dict[str, np.ndarray]]:
    """One folder's scans -> (JSON-able meta, arrays): the cache entry layout."""
    usable = [(pair, scan) for pair, scan in zip(pairs, scans) if scan.size is not None]
    names: dict[int, str] = {}
    for scan in scans:
        for class_id, name in scan.names.items():
            names.setdefault(class_id, name)
    meta = {
        "images": [image for (image, _), _ in usable],
        "annotations": [ann for (_, ann), _ in usable],
        "class_names": {str(k): v for k, v in names.items()},
        "problems": [[p.path, p.reason] for p in pairing] + [list(p) for scan in scans for p in scan.problems],
    }
    counts = [len(scan.class_ids) for _, scan in usable]
    arrays = {
        "sizes": np.array([scan.size for _, scan in usable], dtype=np.int64).reshape(-1, 2),
        "offsets": np.concatenate(([0], np.cumsum(counts, dtype=np.int64))),
        "class_ids": np.array([c for _, scan in usable for c in scan.class_ids], dtype=np.int64),
        "boxes": np.array([b for _, scan in usable for b in scan.boxes], dtype=np.float32).reshape(-1, 4),
        "distances": np.array([d for _, scan in usable for d in scan.distances], dtype=np.float32),
    }
    return meta, arrays


def _merge(root: Path, parts: list[tuple[dict, dict[str, np.ndarray]]], problems: list[Problem]) -> CognataIndex:
    images, annotations, names = [], [], {}
    for meta, _ in parts:
        images += meta["images"]
        annotations += meta["annotations"]
        for key, value in meta["class_names"].items():
            names.setdefault(int(key), value)
        problems = problems + [Problem(str(root / path), reason) for path, reason in meta["problems"]]
    arrays = [a for _, a in parts]
    counts = np.concatenate([np.diff(a["offsets"]) for a in arrays]) if arrays else np.zeros(0, np.int64)
    return CognataIndex(
        root=root,
        images=images,
        annotations=annotations,
        sizes=np.concatenate([a["sizes"] for a in arrays]) if arrays else np.zeros((0, 2), np.int64),
        offsets=np.concatenate(([0], np.cumsum(counts, dtype=np.int64))),
        class_ids=np.concatenate([a["class_ids"] for a in arrays]) if arrays else np.zeros(0, np.int64),
        boxes=np.concatenate([a["boxes"] for a in arrays]) if arrays else np.zeros((0, 4), np.float32),
        distances=np.concatenate([a["distances"] for a in arrays]) if arrays else np.zeros(0, np.float32),
        class_names=names,
        problems=problems,
    )


# -- object rules, label map and split --------------------------------------------------------------
@dataclass
class Selection:
    """The object rules applied to an index.

    ``reasons [O]`` holds a code per object (:data:`KEPT` or why not), ``clipped [O]`` marks kept
    boxes that were clipped, ``boxes [O, 4]`` are clipped to the image, ``labels [O]`` are -1 for
    objects not kept. ``frames [F]`` marks frames passing the reference's criterion (the split's
    population); ``usable [F]`` those with an object left after cleaning.
    """

    label_spec: LabelMap
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


def select_objects(index: CognataIndex, ignore_classes: Sequence[int] = DEFAULT_IGNORE_CLASSES, label_spec: LabelMap | None = None) -> Selection:
    """Apply the object rules (module docstring); ``label_spec`` None builds the first-appearance map."""
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

    if label_spec is None:  # reference order: every non-ignored row of the kept frames, in file order
        appearing = index.class_ids[frames[frame_of] & ~ignored]
        label_spec = first_appearance(appearing.tolist(), index.class_names)
    labels = label_spec.labels_of(index.class_ids)
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
    return Selection(label_spec, reasons, clipped, boxes, np.where(reasons == KEPT, labels, -1), frames, usable)


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


def read_file_list(path: str | Path) -> list[str]:
    """Image paths (relative to the dataset root) from a CSV such as MLPerf's ``val_set.csv``.

    Uses the ``img`` column when the first row is a header naming it, else the first column.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row and row[0].strip()]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot read file list: {exc}") from exc
    column = 0
    if rows and "img" in [c.strip() for c in rows[0]]:
        column = [c.strip() for c in rows[0]].index("img")
        rows = rows[1:]
    entries = [Path(row[column].strip().lstrip("/\\")).as_posix() for row in rows if len(row) > column]
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
        label_spec: the label map, by default the fixed 15-class one; ``None`` numbers classes by
            first appearance (then save ``dataset.label_spec.to_dict()`` with the checkpoint and
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
        label_spec: LabelMap | None = COGNATA_LABELS,
        file_list: str | Path | None = None,
        transform: Transform | None = None,
        strict: bool = False,
        cache_dir: str | Path | None = None,
        workers: int | None = None,
    ):
        problems = ProblemLog(strict)
        index = scan_cognata(root, folders, cameras, cache_dir, workers)
        problems.report_all(index.problems)
        selection = select_objects(index, ignore_classes, label_spec)
        problems.report_all(selection.problems(index))

        candidates = np.flatnonzero(selection.frames)
        if file_list is not None:
            chosen = self._from_list(index, selection, file_list, problems)
        else:
            chosen = [int(candidates[i]) for i in split_frames(len(candidates), split)]
        chosen = [f for f in chosen if selection.usable[f]]
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
        )
        super().__init__(
            index.root, annotations, selection.label_spec, range(selection.label_spec.num_classes), transform, problems, selection.filtered_counts()
        )
        source = split if file_list is None else Path(file_list).name
        log.info("cognata %s at %s: %d frames, %d objects, %s", source, index.root, len(self), len(annotations.labels), problems.summary())

    @staticmethod
    def _from_list(index: CognataIndex, selection: Selection, file_list: str | Path, problems: ProblemLog) -> list[int]:
        position = {path: i for i, path in enumerate(index.images)}
        chosen = []
        for path in read_file_list(file_list):
            frame = position.get(path)
            if frame is None:
                problems.report(Problem(str(index.root / path), f"listed in {file_list}: no such paired frame"))
            elif not selection.usable[frame]:
                problems.report(Problem(str(index.root / path), f"listed in {file_list}: frame has no kept object"))
            else:
                chosen.append(frame)
        return chosen
