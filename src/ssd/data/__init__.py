"""Data pipeline: COCO 2017 and Cognata datasets, SSD augmentation, batching, synthetic data, statistics.

The trainer needs :func:`build_dataset` and :func:`ssd.data.loader.build_loader`; the item and batch
contracts are in :mod:`ssd.data.dataset` and :mod:`ssd.data.loader`.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ssd.config import Config
from ssd.data.cognata import COGNATA_LABELS, CognataDataset
from ssd.data.coco import CocoDataset
from ssd.data.dataset import DetectionDataset, Transform
from ssd.data.labels import LabelMap
from ssd.data.loader import DetectionLoader, build_loader, collate
from ssd.data.problems import CorruptImageError, DataError, Problem
from ssd.data.transforms import eval_transform, train_transform

KINDS = ("coco", "cognata")

__all__ = [
    "KINDS", "CocoDataset", "CognataDataset", "CorruptImageError", "DataError", "DetectionDataset", "DetectionLoader",
    "LabelMap", "Problem", "build_dataset", "build_loader", "collate", "eval_transform", "train_transform",
]


def build_dataset(
    kind: str,
    data_path: str | Path,
    split: str,
    config: Config,
    *,
    train: bool | None = None,
    transform: Transform | None = None,
    strict: bool = False,
    label_map: LabelMap | Mapping[str, Any] | None = None,
    folders: Sequence[str] | None = None,
    cameras: Sequence[str] | None = None,
    file_list: str | Path | None = None,
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> DetectionDataset:
    """A dataset of ``kind`` (``coco`` or ``cognata``, any case) for ``split``, sized for ``config``.

    Args:
        split: ``train`` or ``val`` (Cognata also ``all``).
        train: training augmentation (and, for COCO, skipping images without boxes); default
            ``split == "train"``.
        transform: replaces the default train/eval transform to ``config.model.image_size``.
        strict: bad input raises :class:`DataError` instead of being recorded on ``dataset.problems``.
        label_map: Cognata label map saved with a checkpoint (``dataset.label_spec.to_dict()``);
            default: the config's choice (``use_label_info``: fixed 15 classes, else first appearance).
        folders, cameras: Cognata scenarios and cameras; default: the config's ``dataset`` section,
            or every one found when that is empty.
        file_list: Cognata CSV of image paths (e.g. MLPerf's validation list) instead of the split.
        cache_dir: where the Cognata index cache goes when the dataset folder is read-only.
        workers: processes for the first Cognata CSV scan.
    """
    kind = kind.lower()
    if kind not in KINDS:
        raise DataError(f"unknown dataset kind {kind!r}: expected one of {', '.join(KINDS)}")
    train = split == "train" if train is None else train
    if transform is None:
        transform = train_transform(config.model.image_size) if train else eval_transform(config.model.image_size)
    if kind == "coco":
        return CocoDataset(data_path, split, train=train, transform=transform, strict=strict)
    section = config.dataset
    if isinstance(label_map, Mapping):
        label_map = LabelMap.from_dict(label_map)
    if label_map is None and section.use_label_info:
        label_map = COGNATA_LABELS
    return CognataDataset(
        data_path,
        split,
        folders=section.folders if folders is None else folders,
        cameras=section.cameras if cameras is None else cameras,
        ignore_classes=section.ignore_classes,
        label_spec=label_map,
        file_list=file_list,
        transform=transform,
        strict=strict,
        cache_dir=cache_dir,
        workers=workers,
    )
