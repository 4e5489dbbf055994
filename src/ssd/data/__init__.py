"""Data pipeline: COCO 2017 and Cognata datasets, SSD augmentation, batching, synthetic data, statistics.

The dataset kinds are in :mod:`ssd.data.kinds` (:func:`build_dataset`); the item and batch contracts
in :mod:`ssd.data.dataset` and :mod:`ssd.data.loader`. Names below are imported on first use, so
importing the package (as the CLI does for ``--help``) loads nothing heavy.
"""
from __future__ import annotations

from ssd.lazy import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "CocoDataset": "ssd.data.coco",
    "CognataDataset": "ssd.data.cognata",
    "CorruptImageError": "ssd.data.problems",
    "DataError": "ssd.data.problems",
    "DetectionDataset": "ssd.data.dataset",
    "DetectionLoader": "ssd.data.loader",
    "LabelMap": "ssd.data.labels",
    "Problem": "ssd.data.problems",
    "build_dataset": "ssd.data.kinds",
    "build_loader": "ssd.data.loader",
    "collate": "ssd.data.loader",
    "dataset_kind": "ssd.data.kinds",
    "eval_transform": "ssd.data.transforms",
    "train_transform": "ssd.data.transforms",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
