"""Dataset statistics: what the loaders keep, per class and size, and everything they skip and why."""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ssd.config import Config
from ssd.data.coco import SPLITS as COCO_SPLITS
from ssd.data.coco import CocoDataset, annotation_file
from ssd.data.cognata import KEPT, PROBLEM_CODES, config_selection, describe_object, select_objects
from ssd.data.cognata_index import scan_cognata
from ssd.data.dataset import read_image
from ssd.data.problems import CorruptImageError, DataError, Problem, ProblemLog

# COCO's object size buckets, by area in original-image pixels
SMALL_AREA = 32**2
LARGE_AREA = 96**2


@dataclass
class DatasetStats:
    """Kept images and objects, objects per class name and size, and skipped files and objects."""

    dataset: str
    root: str
    images: int = 0
    objects: int = 0
    per_class: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    side_px: dict[str, float] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise_sizes(stats: DatasetStats, boxes: np.ndarray) -> None:
    """Fill the size buckets and side percentiles from kept boxes ``[K, 4]`` (xyxy pixels)."""
    area = (boxes[:, 2] - boxes[:, 0]).astype(np.float64) * (boxes[:, 3] - boxes[:, 1])
    stats.sizes = {
        f"small (< {SMALL_AREA} px^2)": int((area < SMALL_AREA).sum()),
        "medium": int(((area >= SMALL_AREA) & (area < LARGE_AREA)).sum()),
        f"large (>= {LARGE_AREA} px^2)": int((area >= LARGE_AREA).sum()),
    }
    if area.size:
        side = np.sqrt(area)
        stats.side_px = {"min": float(side.min()), "median": float(np.median(side)), "max": float(side.max())}


def per_class_counts(labels: np.ndarray, class_names: Sequence[str]) -> dict[str, int]:
    counts = np.bincount(labels, minlength=len(class_names))
    return {class_names[label]: int(counts[label]) for label in range(1, len(class_names))}


def decode_failures(paths: Sequence[Path], strict: bool = False, workers: int | None = None) -> dict[str, str]:
    """Path -> reason of every image in ``paths`` that does not decode as training reads it.

    Decodes in threads (the decoders release the GIL) with a progress bar; ``strict`` raises
    :class:`DataError` at the first failure.
    """
    def check(path: Path) -> tuple[str, str | None]:
        try:
            read_image(path)
        except CorruptImageError as exc:
            return str(path), f"corrupt image: {exc}"
        return str(path), None

    failures: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=workers or min(os.cpu_count() or 1, 8)) as pool:
        for path, reason in tqdm(pool.map(check, paths), total=len(paths), desc="decoding images", unit="image", leave=False):
            if reason is not None:
                if strict:
                    raise DataError(f"{path}: {reason} (strict mode)")
                failures[path] = reason
    return failures


def cognata_stats(
    root: str | Path, config: Config | None = None, *, cache_dir: str | Path | None = None, strict: bool = False, verify_images: bool = False
) -> DatasetStats:
    """Statistics of every frame of the selection (before any split), with the loader's rules.

    The selection is the config's ``dataset`` section (:func:`ssd.data.cognata.config_selection`),
    or every scenario and camera with the default rules. ``verify_images`` decodes every usable
    frame (:func:`decode_failures`); one that fails is left out and listed, as training would.
    """
    selected = config_selection(config)
    index = scan_cognata(root, selected["folders"], selected["cameras"], cache_dir)
    selection = select_objects(index, selected["ignore_classes"], selected["label_map"])
    problems = ProblemLog(strict)
    problems.report_all(index.problems)
    problems.report_all(selection.problems(index))
    stats = DatasetStats("cognata", str(index.root))
    usable = selection.usable.copy()
    failures = decode_failures([index.root / index.images[f] for f in np.flatnonzero(usable)], strict) if verify_images else {}
    for frame in np.flatnonzero(usable):
        reason = failures.get(str(index.root / index.images[frame]))
        if reason is not None:
            problems.report(Problem(str(index.root / index.images[frame]), reason))
            usable[frame] = False
    kept = (selection.reasons == KEPT) & usable[index.frame_of_object]
    stats.images = int(usable.sum())
    stats.objects = int(kept.sum())
    stats.per_class = per_class_counts(selection.labels[kept], selection.label_map.class_names)
    summarise_sizes(stats, selection.boxes[kept])
    stats.skipped = [{"path": p.path, "reason": p.reason} for p in problems]
    frame_of = index.frame_of_object
    for k in np.flatnonzero((selection.reasons != KEPT) & ~np.isin(selection.reasons, PROBLEM_CODES)):
        stats.skipped.append({"path": str(index.root / index.annotations[frame_of[k]]), "reason": describe_object(index, selection, int(k))})
    for frame in np.flatnonzero(~selection.usable):
        stats.skipped.append({"path": str(index.root / index.images[frame]), "reason": "frame without a kept object"})
    return stats


def coco_stats(
    root: str | Path,
    config: Config | None = None,
    *,
    cache_dir: str | Path | None = None,
    strict: bool = False,
    verify_images: bool = False,
    splits: Sequence[str] = COCO_SPLITS,
) -> DatasetStats:
    """Statistics of the COCO splits present under ``root``, each under its own rules.

    ``config`` and ``cache_dir`` change nothing for COCO (the kinds' common signature).
    ``verify_images`` decodes every image (:func:`decode_failures`); one that fails is listed and
    left out, as training would.

    Training skips images without non-crowd boxes; evaluation keeps them. Crowd boxes are listed
    as skipped (evaluation only).
    """
    present = [s for s in splits if annotation_file(root, s).is_file()]
    if not present:
        raise DataError(f"{root}: no COCO annotation file ({', '.join(str(annotation_file(root, s)) for s in splits)})")
    stats = DatasetStats("coco", str(root))
    per_class: Counter[str] = Counter()
    kept_boxes = []
    for split in present:
        dataset = CocoDataset(root, split, train=False, strict=strict)
        ann = dataset.annotations
        stats.skipped += [{"path": p.path, "reason": p.reason} for p in dataset.problems]
        failures = decode_failures([dataset.image_path(i) for i in range(len(dataset))], strict) if verify_images else {}
        for index in range(len(dataset)):
            part = ann.objects(index)
            crowd = ann.iscrowd[part]
            path = str(dataset.image_path(index))
            if path in failures:
                stats.skipped.append({"path": path, "reason": failures[path]})
                continue
            stats.skipped += [{"path": path, "reason": "crowd box (evaluation only)"}] * int(crowd.sum())
            if split == "train" and crowd.all():
                stats.skipped.append({"path": path, "reason": "image without boxes (skipped in training)"})
                continue
            stats.images += 1
            labels = ann.labels[part][~crowd]
            stats.objects += len(labels)
            per_class.update(per_class_counts(labels, dataset.class_names))
            kept_boxes.append(ann.boxes[part][~crowd])
    stats.per_class = dict(per_class)
    summarise_sizes(stats, np.concatenate(kept_boxes) if kept_boxes else np.zeros((0, 4), np.float32))
    return stats
