"""The one evaluator: a model over a validation loader, every rank's detections gathered, COCO mAP.

Training's per-epoch evaluation and ``ssd evaluate`` both use :class:`Evaluator`. Each rank runs
its shard of the loader through the :class:`ssd.predictor.Predictor`; the detections of all ranks
are merged (each image once: a ``DistributedSampler`` pads ranks by repeating images) and scored on
rank 0 over every image some rank evaluated; every rank receives the result.

An unreadable image is never replaced by another (training's loader does that): it is left out of
the scoring, ground truth included, and reported in :attr:`Evaluation.unreadable`, so the mAP is
that of the readable images, each counted once.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ssd.data.dataset import DetectionDataset
from ssd.data.problems import DataError
from ssd.distributed import broadcast_object, gather_objects_to_main
from ssd.evaluation import EvalResult, detections_to_coco, merge_detections, score_detections
from ssd.evaluation.coco_eval import Thresholds
from ssd.heap_retention import StepHook, no_step_hook
from ssd.predictor import Predictor


@dataclass
class Evaluation:
    """One evaluation's outcome: the result and the number of distinct images scored, the unreadable
    images left out (paths; every rank), and on rank 0 the merged detections in COCO results format
    (original-image pixels; empty on other ranks)."""

    result: EvalResult
    images: int
    unreadable: list[str] = field(default_factory=list)
    detections: list[dict[str, Any]] = field(default_factory=list)


class Evaluator:
    """Scores ``predictor``'s network on ``loader`` (a split of ``dataset``) with COCO mAP.

    ``thresholds``: COCOeval's (``coco``) or torchmetrics' float32 ones (``torchmetrics``, MLPerf's
    scorer). ``after_step`` runs after each batch (see :mod:`ssd.heap_retention`).
    """

    def __init__(
        self,
        predictor: Predictor,
        loader: DataLoader,
        dataset: DetectionDataset,
        *,
        thresholds: Thresholds = "coco",
        after_step: StepHook = no_step_hook,
        show_progress: bool = False,
    ):
        self.predictor = predictor
        self.loader = loader
        self.dataset = dataset
        self.thresholds = thresholds
        self.after_step = after_step
        self.show_progress = show_progress
        if dataset.substitute_unreadable:
            raise ValueError("the dataset substitutes unreadable images (a training split's behaviour): evaluation scores "
                             "only what it read; build the split with train=False")
        self.ground_truth = dataset.coco_ground_truth()
        self.category_of_label = dataset.category_of_label

    def predict(self) -> tuple[list[dict[str, Any]], list[int]]:
        """This rank's COCO-results detections and the ids of every image it scored (its unreadable
        images are in ``loader.unreadable``)."""
        if isinstance(self.predictor.network, nn.Module):
            self.predictor.network.eval()
        detections: list[dict[str, Any]] = []
        image_ids: list[int] = []
        batches = tqdm(self.loader, desc="evaluating", disable=not self.show_progress, dynamic_ncols=True, leave=False)
        for images, targets in batches:
            outputs = self.predictor(images, [t["orig_size"] for t in targets])
            ids = [int(t["image_id"]) for t in targets]
            detections += detections_to_coco(outputs, ids, self.category_of_label)
            image_ids += ids
            self.after_step()
        return detections, image_ids

    def evaluate(self) -> Evaluation:
        """Predict on every rank, gather to rank 0 and score there, share the result (a collective:
        every rank calls it).

        Raises :class:`ssd.data.problems.DataError` (on every rank) when no image could be read.
        """
        detections, image_ids = self.predict()
        unreadable = [problem.path for problem in getattr(self.loader, "unreadable", [])]
        gathered = gather_objects_to_main((detections, image_ids, unreadable))
        evaluation, error = None, None
        if gathered is not None:  # rank 0
            evaluated = sorted({image_id for _, ids, _ in gathered for image_id in ids})
            skipped = sorted({path for _, _, paths in gathered for path in paths})
            if evaluated:
                merged = merge_detections(dets for dets, _, _ in gathered)
                result = score_detections(self.ground_truth, merged, evaluated, thresholds=self.thresholds)
                evaluation = Evaluation(result, len(evaluated), skipped, list(merged))
            else:
                first = f" ({skipped[0]} ...)" if skipped else ""
                error = f"{self.dataset.root}: none of the {len(self.dataset)} images to evaluate could be read{first}"
        # every rank gets the outcome, without the detections (rank 0's alone)
        summary = None if evaluation is None else Evaluation(evaluation.result, evaluation.images, evaluation.unreadable)
        error, summary = broadcast_object((error, summary) if gathered is not None else None)
        if error is not None:
            raise DataError(error)
        return evaluation if evaluation is not None else summary
