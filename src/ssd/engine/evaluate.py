"""Run a model over a dataset, gather every rank's detections, and score them with COCO mAP."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ssd.amp import MixedPrecision
from ssd.distributed import all_gather_objects, broadcast_object
from ssd.evaluation import EvalResult, detections_to_coco, merge_detections, score_detections
from ssd.evaluation.coco_eval import Thresholds
from ssd.engine.train import images_to_device
from ssd.heap_retention import after_step_on
from ssd.postprocess import postprocess


@dataclass(frozen=True)
class DecodeSettings:
    """Decoding limits; the defaults are the reference's COCO evaluation (``mlperf()``: Cognata/MLPerf)."""

    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    max_per_class: int = 200
    max_detections: int = 200

    @classmethod
    def mlperf(cls, nms_threshold: float = 0.5) -> "DecodeSettings":
        return cls(nms_threshold=nms_threshold, max_detections=500)

    def decode(self, locs: torch.Tensor, confs: torch.Tensor, anchors: torch.Tensor, image_sizes) -> list[dict]:
        return postprocess(
            locs, confs, anchors, score_threshold=self.score_threshold, nms_threshold=self.nms_threshold,
            max_per_class=self.max_per_class, max_detections=self.max_detections, image_sizes=image_sizes,
        )


@torch.inference_mode()
def predict_loader(
    model: nn.Module,
    loader: DataLoader,
    anchors: torch.Tensor,
    device: torch.device,
    precision: MixedPrecision,
    settings: DecodeSettings,
    label_to_category: Callable[[int], int] | dict[int, int],
    *,
    channels_last: bool = False,
    show_progress: bool = False,
) -> tuple[list[dict[str, Any]], list[int]]:
    """COCO-results detections (pixels of the original images) and the ids of every image seen.

    On the CPU, freed memory stays in the heap for the next batch while that is affordable
    (:mod:`ssd.heap_retention`).
    """
    model.eval()
    anchors = anchors.to(device)
    detections: list[dict[str, Any]] = []
    image_ids: list[int] = []
    for images, targets in tqdm(loader, desc="evaluating", disable=not show_progress, dynamic_ncols=True, leave=False):
        images = images_to_device(images, device, channels_last)
        with precision.autocast():
            locs, confs = model(images)
        outputs = settings.decode(locs, confs, anchors, [t["orig_size"] for t in targets])
        ids = [int(t["image_id"]) for t in targets]
        detections += detections_to_coco(outputs, ids, label_to_category)
        image_ids += ids
        after_step_on(device)
    return detections, image_ids


def gather_detections(detections: list[dict[str, Any]], image_ids: list[int]) -> tuple[list[dict[str, Any]], list[int]]:
    """Every rank's detections merged, each image once (a ``DistributedSampler`` pads ranks by
    repeating images), and the ids of every image some rank evaluated."""
    gathered = all_gather_objects((detections, image_ids))
    merged = merge_detections(dets for dets, _ in gathered)
    return merged, sorted({image_id for _, ids in gathered for image_id in ids})


def evaluate_predictions(
    detections: list[dict[str, Any]], image_ids: list[int], ground_truth: dict[str, Any], thresholds: Thresholds = "coco"
) -> tuple[EvalResult, int]:
    """Gather all ranks' detections, score them on rank 0 over the evaluated images, share the result.

    Returns the result (on every rank) and the number of distinct images evaluated.
    """
    merged, evaluated = gather_detections(detections, image_ids)
    is_main = not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0
    result = score_detections(ground_truth, merged, evaluated, thresholds=thresholds) if is_main else None
    return broadcast_object(result), len(evaluated)
