"""The table of dataset kinds: how each is built, decoded for evaluation, summarised and synthesised.

Every command that takes ``--dataset`` looks the kind up here (case-insensitive: the reference
writes ``Cognata`` and ``Coco``); adding a dataset is one module with a builder and one entry in
:data:`DATASET_KINDS`. A builder is called as ``build(data_path, split, config, options)`` with
:class:`DatasetOptions` and returns a :class:`ssd.data.dataset.DetectionDataset`; ``stats(data_path, config, *, cache_dir, strict)``
returns :class:`ssd.data.stats.DatasetStats`; ``synth(out, images, *, size, seed)`` writes a
synthetic dataset in the kind's real layout.

This module imports nothing heavy (the CLI reads the names for ``--help``): the functions are named
as ``"module:function"`` and imported on first use.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssd.data.problems import DataError

if TYPE_CHECKING:
    from ssd.config import Config
    from ssd.data.dataset import DetectionDataset, Transform
    from ssd.data.labels import LabelMap
    from ssd.decoding import DecodeSettings


class UnknownDatasetError(DataError, ValueError):
    """A dataset kind that is not in the table."""


@dataclass(frozen=True)
class DatasetOptions:
    """How to build a dataset, whatever its kind; each builder uses what applies to it.

    Attributes:
        train: training augmentation (and, for COCO, skipping images without boxes).
        transform: applied to ``(image, target)``; None = normalisation at the original size.
        strict: bad input raises :class:`DataError` instead of being recorded on ``dataset.problems``.
        label_map: a checkpoint's label map (a :class:`ssd.data.labels.LabelMap` or its dict);
            Cognata applies it, COCO takes its labels from the annotation file.
        file_list: Cognata: CSV of image paths (e.g. MLPerf's validation list) instead of the split.
        cache_dir: where an index cache goes when the dataset folder is read-only.
        workers: processes for the first scan of the annotations.
    """

    train: bool = False
    transform: Transform | None = None
    strict: bool = False
    label_map: LabelMap | Mapping[str, Any] | None = None
    file_list: str | Path | None = None
    cache_dir: str | Path | None = None
    workers: int | None = None


def _function(reference: str) -> Callable[..., Any]:
    module, name = reference.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class DatasetKind:
    """One dataset format.

    Attributes:
        name: what ``--dataset`` says (lower case).
        title: the name as people write it.
        builder, stats, synth: ``"module:function"`` of the functions described in the module docstring.
        decode_preset: the :class:`ssd.decoding.DecodeSettings` classmethod its evaluation decodes
            with (``reference``: 200 detections per image; ``mlperf``: 500, MLPerf Automotive's).
    """

    name: str
    title: str
    builder: str
    stats: str
    synth: str
    decode_preset: str

    def build(
        self, data_path: Any, split: str, config: Config, *, train: bool | None = None, transform: Transform | None = None, **options: Any
    ) -> DetectionDataset:
        """The dataset of ``split`` under ``data_path``, sized for ``config``.

        ``train`` defaults to ``split == "train"``; ``transform`` to the train or eval transform to the
        config's image size. Other options: :class:`DatasetOptions`.
        """
        train = split == "train" if train is None else train
        if transform is None:
            from ssd.data.transforms import eval_transform, train_transform

            transform = (train_transform if train else eval_transform)(config.model.image_size)
        dataset = _function(self.builder)(data_path, split, config, DatasetOptions(train=train, transform=transform, **options))
        dataset.substitute_unreadable = train  # evaluation scores what it read, and nothing in its place
        return dataset

    def statistics(self, data_path: Any, config: Config | None = None, **options: Any) -> Any:
        """What a loader of this kind keeps and skips (:class:`ssd.data.stats.DatasetStats`)."""
        return _function(self.stats)(data_path, config, **options)

    def synthesise(self, out: Any, images: int, **options: Any) -> Any:
        """Write ``images`` synthetic images with annotations in this kind's layout under ``out``."""
        return _function(self.synth)(out, images, **options)

    def decode_settings(self, nms_threshold: float = 0.5) -> DecodeSettings:
        """The decoding this kind is evaluated with, at ``nms_threshold``."""
        from ssd.decoding import DecodeSettings

        return getattr(DecodeSettings, self.decode_preset)(nms_threshold)


DATASET_KINDS = {
    "coco": DatasetKind(
        "coco", "COCO", builder="ssd.data.coco:build_coco", stats="ssd.data.stats:coco_stats",
        synth="ssd.data.synth:synth_coco", decode_preset="reference",
    ),
    "cognata": DatasetKind(
        "cognata", "Cognata", builder="ssd.data.cognata:build_cognata", stats="ssd.data.stats:cognata_stats",
        synth="ssd.data.synth:synth_cognata", decode_preset="mlperf",
    ),
    "cognata-preprocessed": DatasetKind(
        "cognata-preprocessed", "Cognata-preprocessed", builder="ssd.data.preprocessed:build_preprocessed",
        stats="ssd.data.preprocessed:preprocessed_stats", synth="ssd.data.preprocessed:synth_preprocessed", decode_preset="mlperf",
    ),
}


def dataset_kind(name: str) -> DatasetKind:
    """The kind called ``name`` (any case); raises :class:`UnknownDatasetError` for any other name."""
    kind = DATASET_KINDS.get(name.lower())
    if kind is None:
        raise UnknownDatasetError(f"unknown dataset kind {name!r}: expected one of {', '.join(k.title for k in DATASET_KINDS.values())}")
    return kind


def build_dataset(kind: str, data_path: Any, split: str, config: Config, **options: Any) -> DetectionDataset:
    """``dataset_kind(kind).build(...)``: a dataset of ``kind`` (``coco`` or ``cognata``, any case) for ``split``."""
    return dataset_kind(kind).build(data_path, split, config, **options)
