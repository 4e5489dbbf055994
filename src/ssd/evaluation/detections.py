"""Detections in COCO results format: conversion from model outputs, and gathering across ranks."""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ssd.evaluation.coco_eval import EvaluationError


def detections_to_coco(
    outputs: Sequence[Mapping[str, Tensor]],
    image_ids: Sequence[int],
    label_to_category: Mapping[int, int] | Callable[[int], int],
) -> list[dict[str, Any]]:
    """COCO results entries from per-image detections (the postprocess contract).

    ``outputs[i]`` holds ``boxes [K, 4]`` (x1, y1, x2, y2 in pixels of the original image),
    ``scores [K]`` and ``labels [K]`` (contiguous model labels) for image ``image_ids[i]``. Each
    detection becomes ``{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}``, its
    label mapped through ``label_to_category`` (a mapping or a function). A label missing from the
    mapping raises :class:`EvaluationError`.
    """
    if len(outputs) != len(image_ids):
        raise ValueError(f"{len(outputs)} outputs for {len(image_ids)} image ids")
    category_of = label_to_category.__getitem__ if isinstance(label_to_category, Mapping) else label_to_category
    results = []
    for output, image_id in zip(outputs, image_ids):
        boxes = output["boxes"].detach().to("cpu", torch.float64)
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        for box, score, label in zip(xywh, output["scores"].tolist(), output["labels"].tolist()):
            try:
                category_id = int(category_of(label))
            except KeyError:
                raise EvaluationError(f"label {label} has no category in label_to_category") from None
            results.append({"image_id": int(image_id), "category_id": category_id, "bbox": box, "score": score})
    return results


def merge_detections(per_rank: Iterable[Iterable[Mapping[str, Any]]]) -> list[Mapping[str, Any]]:
    """Concatenate the detection lists of several ranks, counting every image once.

    A ``DistributedSampler`` pads the dataset so that every rank gets as many images: an image may be
    evaluated on two ranks. Each image's detections are taken from the first list in which the image
    appears and dropped from the others (a rank never sees one image twice, so within one list
    nothing is dropped).
    """
    owner: dict[Any, int] = {}
    merged = []
    for rank, detections in enumerate(per_rank):
        for det in detections:
            if owner.setdefault(det["image_id"], rank) == rank:
                merged.append(det)
    return merged
