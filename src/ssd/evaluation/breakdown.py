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
import torch
from faster_coco_eval import COCO, COCOeval_faster
from torchvision.ops import box_iou

from ssd.evaluation.confusion import coco_boxes_xyxy
from ssd.evaluation.coco_eval import MISSING, Thresholds, _load_detections, _load_ground_truth, _mean_defined, _thresholds, logger

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
    """The ground truth and detections loaded once, then :meth:`breakdown` per attribute.

    ``ground_truth`` is a COCO dict whose annotations may carry attribute keys (``distance``);
    ``detections`` COCO results. ``max_dets``: the detections per image that count (MLPerf: 500 with
    torchmetrics' thresholds, as the headline was scored).
    """

    def __init__(
        self, ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], *, max_dets: int = 100,
        thresholds: Thresholds = "coco", class_names: Mapping[int, str] | None = None,
    ):
        self.raw_annotations = list(ground_truth["annotations"])
        self.coco_gt = COCO(_load_ground_truth(ground_truth), print_function=logger.debug)
        self.coco_dt = self.coco_gt.loadRes(_load_detections(detections, self.coco_gt))
        self.max_dets = int(max_dets)
        self.iou_thresholds, self.recall_thresholds = _thresholds(thresholds)
        self.category_ids = sorted(self.coco_gt.cats)
        names = [(class_names or {}).get(c, self.coco_gt.cats[c]["name"]) for c in self.category_ids]
        self.class_names = [str(name) for name in names]
        # loadRes numbers annotations and detections from 1 in their order; keep both orders
        self.gt_ids = [ann["id"] for ann in self.coco_gt.dataset["annotations"]]
        self.dt_ids = [ann["id"] for ann in self.coco_dt.dataset["annotations"]]
        self.gt_areas = np.array([self.coco_gt.anns[i]["area"] for i in self.gt_ids], dtype=np.float64)
        self.dt_areas = np.array([self.coco_dt.anns[i]["area"] for i in self.dt_ids], dtype=np.float64)
        self._ious: dict[tuple[int, int], Any] | None = None

    def attributes(self) -> list[str]:
        """The attribute keys every ground-truth annotation has (besides COCO's own)."""
        if not self.raw_annotations:
            return []
        common = set.intersection(*(set(ann) for ann in self.raw_annotations))
        return sorted(common - {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation", "ignore"})

    def breakdown(self, attribute: str, bands: Sequence[Band]) -> Breakdown:
        """AP, AR and counts per class x band of ``attribute`` (``"size"``: the box area), plus ``"all"``."""
        if attribute == "size":
            gt_values, dt_values = self.gt_areas, self.dt_areas
        else:
            gt_values = np.array([float(ann[attribute]) for ann in self.raw_annotations], dtype=np.float64)
            dt_values = self._assigned(gt_values)
        background = np.isnan(dt_values)
        labelled = [Band("all", -math.inf, math.inf), *bands]
        cells: dict[str, dict[str, Cell]] = {}
        if not background.any():
            cells.update(self._cells(labelled, gt_values, dt_values, dt_values))
        else:  # one evaluation per band, the valueless detections placed inside it
            for band in labelled:
                inside = dt_values.copy()
                inside[background] = band.low if math.isfinite(band.low) else 0.0
                cells.update(self._cells([band], gt_values, inside, dt_values))
        return Breakdown(attribute, list(bands), cells, int(background.sum()))

    def _assigned(self, gt_values: np.ndarray) -> np.ndarray:
        """Each detection's value: the most-overlapped ground truth's, own class first; NaN on the background."""
        values = np.full(len(self.dt_ids), np.nan)
        position = {ann_id: k for k, ann_id in enumerate(self.gt_ids)}
        dt_position = {ann_id: k for k, ann_id in enumerate(self.dt_ids)}
        for image_id in self.coco_dt.imgToAnns:
            dts = self.coco_dt.imgToAnns[image_id]
            gts = [g for g in self.coco_gt.imgToAnns.get(image_id, []) if not g["iscrowd"]]
            if not dts or not gts:
                continue
            iou = box_iou(coco_boxes_xyxy([d["bbox"] for d in dts]), coco_boxes_xyxy([g["bbox"] for g in gts]))
            same = torch.tensor([[d["category_id"] == g["category_id"] for g in gts] for d in dts])
            best_same, which_same = torch.where(same, iou, -1.0).max(dim=1)
            best_any, which_any = iou.max(dim=1)
            which = torch.where(best_same > 0, which_same, which_any)
            overlaps = (best_same > 0) | (best_any > 0)
            for d, g, hit in zip(dts, which.tolist(), overlaps.tolist()):
                if hit:
                    values[dt_position[d["id"]]] = gt_values[position[gts[g]["id"]]]
        return values

    def _cells(self, bands: Sequence[Band], gt_values: np.ndarray, dt_values: np.ndarray, dt_counted: np.ndarray) -> dict[str, dict[str, Cell]]:
        """One COCOeval over ``bands`` as its area ranges, the values put in the ``area`` fields;
        a band's detections are counted by ``dt_counted`` (NaN, the background's, in none but "all")."""
        for ann_id, value in zip(self.gt_ids, gt_values.tolist()):
            self.coco_gt.anns[ann_id]["area"] = value
        for ann_id, value in zip(self.dt_ids, dt_values.tolist()):
            self.coco_dt.anns[ann_id]["area"] = value
        try:
            evaluator = COCOeval_faster(self.coco_gt, self.coco_dt, iouType="bbox", print_function=logger.debug)
            params = evaluator.params
            params.maxDets = [self.max_dets]
            params.iouThrs, params.recThrs = self.iou_thresholds, self.recall_thresholds
            params.areaRng = [[band.low, band.high] for band in bands]
            params.areaRngLbl = [band.label for band in bands]
            if self._ious is not None:  # the IoUs do not depend on the band: computed once
                cached = self._ious
                evaluator.computeIoU = lambda image_id, category_id: cached[image_id, category_id]
            evaluator.evaluate()
            self._ious = evaluator.ious
            evaluator.accumulate()
        finally:
            self._restore_areas()
        precision = np.asarray(evaluator.eval["precision"])  # [T, R, K, A, 1]
        recall = np.asarray(evaluator.eval["recall"])  # [T, K, A, 1]
        crowd = np.array([bool(self.coco_gt.anns[i]["iscrowd"]) for i in self.gt_ids], dtype=bool)
        gt_labels = np.array([self.coco_gt.anns[i]["category_id"] for i in self.gt_ids])
        dt_labels = np.array([self.coco_dt.anns[i]["category_id"] for i in self.dt_ids])
        out: dict[str, dict[str, Cell]] = {}
        for a, band in enumerate(bands):
            gt_in = ~crowd & (gt_values >= band.low) & (gt_values <= band.high)
            dt_in = (dt_counted >= band.low) & (dt_counted <= band.high) if math.isfinite(band.low) else np.ones(len(dt_counted), bool)
            row = {"all": Cell(
                _mean_defined(precision[:, :, :, a, 0]), _mean_defined(precision[0, :, :, a, 0]), _mean_defined(recall[:, :, a, 0]),
                int(gt_in.sum()), int(dt_in.sum()),
            )}
            for k, (category_id, name) in enumerate(zip(self.category_ids, self.class_names)):
                row[name] = Cell(
                    _mean_defined(precision[:, :, k, a, 0]), _mean_defined(precision[0, :, k, a, 0]), _mean_defined(recall[:, k, a, 0]),
                    int((gt_in & (gt_labels == category_id)).sum()), int((dt_in & (dt_labels == category_id)).sum()),
                )
            out[band.label] = row
        return out

    def _restore_areas(self) -> None:
        for ann_id, value in zip(self.gt_ids, self.gt_areas.tolist()):
            self.coco_gt.anns[ann_id]["area"] = value
        for ann_id, value in zip(self.dt_ids, self.dt_areas.tolist()):
            self.coco_dt.anns[ann_id]["area"] = value


__all__ = ["Band", "BandEvaluator", "Breakdown", "Cell", "DISTANCE_EDGES_M", "MIN_GROUND_TRUTH", "SIZE_EDGES_PX", "bands_from_edges", "MISSING"]
