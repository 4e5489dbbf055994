"""AP and AR per class x band of an object attribute (size, distance), each cell a real COCO evaluation.

A band is evaluated the way COCOeval evaluates its area ranges: ground truth whose value lies outside
the band is ignored (neither a miss, nor a false positive when detected), and so is an unmatched
detection whose value lies outside it. For size the value is the box area, a detection's its own (COCO's
rule exactly). Other attributes (Cognata's ``distance``) belong to the ground truth only: a detection
takes the value of the ground truth it overlaps most, of its own class first, then of any class; one
that overlaps nothing (a false positive on the background) has no value and counts against every band,
so no band looks better for it. The band "all" is the plain evaluation, so its mAP is the headline's.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from faster_coco_eval import COCOeval_faster

from ssd.evaluation.coco_eval import EvalResult, Thresholds, load_coco, mean_defined, new_evaluator, summarized
from ssd.evaluation.boxes import DetectionTable, by_image, coco_boxes_xyxy, pairwise_iou

# sqrt(area) edges in pixels: COCO's small (< 32) split at 16, its medium (32-96), and its large split at
# 256, where an 8 MP frame's near objects begin
SIZE_EDGES_PX = (0.0, 16.0, 32.0, 96.0, 256.0, math.inf)
DISTANCE_EDGES_M = (0.0, 50.0, 100.0, 200.0, 300.0)  # Cognata keeps objects up to 300 m
MIN_GROUND_TRUTH = 10  # a cell resting on fewer objects is marked as such, not shown as a confident number


@dataclass(frozen=True)
class Band:
    """Values ``low <= v <= high`` (COCOeval's inclusive area range); ``label`` names it in tables.
    :func:`bands_from_edges` makes ``high`` the float just below the next band's ``low``, so bands
    partition the values and their counts add up to the ``"all"`` cell's."""

    label: str
    low: float
    high: float


def bands_from_edges(edges: Sequence[float], unit: str = "", squared: bool = False) -> list[Band]:
    """Consecutive bands between ``edges``; ``squared``: the edges are sides, the values areas."""
    if len(edges) < 2 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"band edges must be at least two increasing numbers, got {list(edges)}")
    bands = []
    for k, (low, high) in enumerate(zip(edges, edges[1:])):
        label = f"{low:g}-{high:g}{unit}" if math.isfinite(high) else f">={low:g}{unit}"
        low, high = (low * low, high * high) if squared else (low, high)
        last = k == len(edges) - 2
        bands.append(Band(label, low, high if last or not math.isfinite(high) else float(np.nextafter(high, -math.inf))))
    return bands


@dataclass(frozen=True)
class Cell:
    """One class (or ``"all"``) in one band: AP @[.5:.95], AP50, AR @max detections, and how many
    ground-truth objects and detections it rests on (detections: those whose value is in the band)."""

    ap: float
    ap50: float
    ar: float
    ground_truth: int
    detections: int

    @property
    def few(self) -> bool:
        """True when the cell rests on fewer than :data:`MIN_GROUND_TRUTH` objects."""
        return self.ground_truth < MIN_GROUND_TRUTH

    def to_dict(self) -> dict[str, Any]:
        return {"AP": self.ap, "AP50": self.ap50, "AR": self.ar, "ground_truth": self.ground_truth, "detections": self.detections, "few": self.few}


@dataclass(frozen=True)
class Breakdown:
    """``cells[band label][class name or "all"]`` for one attribute, bands in order."""

    attribute: str
    bands: list[Band]
    cells: dict[str, dict[str, Cell]]
    background_detections: int = 0  # detections with no value (count in every band)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attribute": self.attribute,
            "bands": [{"label": b.label, "low": b.low, "high": b.high if math.isfinite(b.high) else None} for b in self.bands],
            "background_detections": self.background_detections,
            "cells": {band: {name: cell.to_dict() for name, cell in row.items()} for band, row in self.cells.items()},
        }


class BandEvaluator:
    """The ground truth and detections loaded once, then :meth:`headline` and :meth:`breakdown` per
    attribute, sharing one computation of the IoUs.

    ``ground_truth`` is a COCO dict whose annotations may carry attribute keys (``distance``);
    ``detections`` COCO results (``detections_name`` names them in error messages). ``max_dets`` and
    ``thresholds`` as the headline is scored (MLPerf: torchmetrics' thresholds); a band counts the most
    detections per image of ``max_dets``.
    """

    def __init__(
        self, ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], *, max_dets: Sequence[int] = (1, 10, 100),
        thresholds: Thresholds = "coco", class_names: Mapping[int, str] | None = None, detections_name: str = "detections",
    ):
        self.raw_annotations = list(ground_truth["annotations"])
        self.coco_gt, self.coco_dt = load_coco(ground_truth, detections, detections_name)
        self.max_dets, self.thresholds, self.given_names = tuple(max_dets), thresholds, class_names
        self.category_ids = sorted(self.coco_gt.cats)
        names = [(class_names or {}).get(c, self.coco_gt.cats[c]["name"]) for c in self.category_ids]
        self.class_names = [str(name) for name in names]
        # the indexes' own annotations (whose areas _banded sets), in their given order
        self.gt, self.dt = self.coco_gt.dataset["annotations"], self.coco_dt.dataset["annotations"]
        self.gt_areas = np.array([ann["area"] for ann in self.gt], dtype=np.float64)
        self.dt_areas = np.array([ann["area"] for ann in self.dt], dtype=np.float64)
        self.gt_labels = np.array([ann["category_id"] for ann in self.gt], dtype=np.int64)
        self.gt_crowd = np.array([bool(ann["iscrowd"]) for ann in self.gt], dtype=bool)
        self.detections = DetectionTable.of(self.dt)  # the checked detections, for every other matching
        self.dt_labels = self.detections.category_id
        self._plain_evaluator: COCOeval_faster | None = None

    def headline(self) -> EvalResult:
        """The plain COCO evaluation (:func:`ssd.evaluation.evaluate_coco`'s result, to the bit)."""
        return summarized(self._plain(), self.given_names)

    def attributes(self) -> list[str]:
        """The attribute keys every ground-truth annotation has (besides COCO's own)."""
        if not self.raw_annotations:
            return []
        common = set.intersection(*(set(ann) for ann in self.raw_annotations))
        return sorted(common - {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation", "ignore"})

    def breakdown(self, attribute: str, bands: Sequence[Band]) -> Breakdown:
        """AP, AR and counts per class x band of ``attribute`` (``"size"``: the box area), plus ``"all"``:
        the plain evaluation's numbers."""
        if attribute == "size":
            gt_values, dt_values = self.gt_areas, self.dt_areas
        else:
            gt_values = np.array([float(ann[attribute]) for ann in self.raw_annotations], dtype=np.float64)
            dt_values = self.assigned(gt_values)
        plain = self._plain().eval
        precision, recall = np.asarray(plain["precision"]), np.asarray(plain["recall"])  # [T, R, K, A, M], [T, K, A, M]
        cells = {"all": self._row(precision[:, :, :, 0, -1], recall[:, :, 0, -1], ~self.gt_crowd, np.ones(len(self.dt), bool))}
        # a NaN value is inside no range and outside none (COCOeval ignores a detection when its area
        # is below or above the range): the valueless detections count in every band
        banded = self._banded(bands, gt_values, dt_values)
        precision, recall = np.asarray(banded["precision"]), np.asarray(banded["recall"])  # one max_dets: the last
        for a, band in enumerate(bands):
            gt_in = ~self.gt_crowd & (gt_values >= band.low) & (gt_values <= band.high)
            dt_in = (dt_values >= band.low) & (dt_values <= band.high)
            cells[band.label] = self._row(precision[:, :, :, a, 0], recall[:, :, a, 0], gt_in, dt_in)
        return Breakdown(attribute, list(bands), cells, int(np.isnan(dt_values).sum()))

    def assigned(self, gt_values: np.ndarray) -> np.ndarray:
        """Each detection's value: the most-overlapped ground truth's, own class first; NaN on the background."""
        values = np.full(len(self.dt), np.nan)
        gt_boxes = coco_boxes_xyxy([ann["bbox"] for ann in self.gt])
        dt_boxes, dt_image = self.detections.boxes, self.detections.image_id
        gt_image = np.array([ann["image_id"] for ann in self.gt])
        gt_class, dt_class = self.gt_labels, self.dt_labels
        objects = np.flatnonzero(~self.gt_crowd)
        for image_id, dts, gts in by_image(dt_image, gt_image[objects]):
            gts = objects[gts]
            iou = pairwise_iou(dt_boxes[dts], gt_boxes[gts])
            same = dt_class[dts, None] == gt_class[None, gts]
            best_same = np.where(same, iou, -1.0)
            which = np.where(best_same.max(axis=1) > 0, best_same.argmax(axis=1), iou.argmax(axis=1))
            hit = iou.max(axis=1) > 0
            values[dts[hit]] = gt_values[gts[which[hit]]]
        return values

    def _plain(self) -> COCOeval_faster:
        """The plain evaluation, run once: its index of the annotations and its IoUs serve every band's."""
        if self._plain_evaluator is None:
            evaluator = new_evaluator(self.coco_gt, self.coco_dt, self.max_dets, self.thresholds)
            evaluator.evaluate()
            self._plain_evaluator = evaluator
        return self._plain_evaluator

    def _banded(self, bands: Sequence[Band], gt_values: np.ndarray, dt_values: np.ndarray) -> dict[str, Any]:
        """The accumulated COCOeval over ``bands`` as its area ranges, the values put in the ``area`` fields.
        It reuses the plain evaluation's index and IoUs: neither depends on the areas (the index holds the
        annotations themselves, whose areas are read when an evaluator evaluates)."""
        plain = self._plain()
        for ann, value in zip(self.gt, gt_values.tolist()):
            ann["area"] = value
        for ann, value in zip(self.dt, dt_values.tolist()):
            ann["area"] = value
        try:
            evaluator = new_evaluator(self.coco_gt, self.coco_dt, self.max_dets, self.thresholds)
            params = evaluator.params
            params.maxDets = [self.max_dets[-1]]
            params.areaRng = [[band.low, band.high] for band in bands]
            params.areaRngLbl = [band.label for band in bands]
            evaluator.gt_dataset, evaluator.dt_dataset = plain.gt_dataset, plain.dt_dataset
            evaluator._nonempty_iou_pairs = plain._nonempty_iou_pairs
            evaluator._prepare = lambda: None
            evaluator.computeIoU = lambda image_id, category_id: plain.ious[image_id, category_id]
            evaluator.evaluate()
        finally:
            for ann, value in zip(self.gt, self.gt_areas.tolist()):
                ann["area"] = value
            for ann, value in zip(self.dt, self.dt_areas.tolist()):
                ann["area"] = value
        return evaluator.eval

    def _row(self, precision: np.ndarray, recall: np.ndarray, gt_in: np.ndarray, dt_in: np.ndarray) -> dict[str, Cell]:
        """One band's cells from its precision ``[T, R, K]`` and recall ``[T, K]``; ``gt_in``, ``dt_in``: what lies in it."""
        row = {"all": Cell(mean_defined(precision), mean_defined(precision[0]), mean_defined(recall), int(gt_in.sum()), int(dt_in.sum()))}
        for k, (category_id, name) in enumerate(zip(self.category_ids, self.class_names)):
            row[name] = Cell(
                mean_defined(precision[:, :, k]), mean_defined(precision[0, :, k]), mean_defined(recall[:, k]),
                int((gt_in & (self.gt_labels == category_id)).sum()), int((dt_in & (self.dt_labels == category_id)).sum()),
            )
        return row

__all__ = ["Band", "BandEvaluator", "Breakdown", "Cell", "DISTANCE_EDGES_M", "MIN_GROUND_TRUTH", "SIZE_EDGES_PX", "bands_from_edges"]
