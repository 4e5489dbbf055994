"""The evaluation report's numbers: the headline, breakdowns, the confusion matrix, curves and the worst frames.

:func:`build_report` computes them from COCO ground truth and detections without running a model;
:func:`render_html` (``ssd.evaluation.report_html``) draws them. The JSON written beside the page is
:meth:`Report.to_dict`, and every number the page shows is one of its values.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ssd.evaluation.breakdown import DISTANCE_EDGES_M, SIZE_EDGES_PX, BandEvaluator, Breakdown, bands_from_edges
from ssd.evaluation.coco_eval import IOU_THRESHOLDS, MISSING, RECALL_THRESHOLDS, EvalResult, Thresholds, collection_paused, stat_names
from ssd.evaluation.confusion import ConfusionMatrix, FrameErrors, confusion_matrix
from ssd.evaluation.error_types import ErrorTypes, error_types

UNITS = {"size": " px", "distance": " m"}  # band labels; size bands are named by their side


@dataclass(frozen=True)
class ReportSettings:
    """What the report computes: band edges per attribute (size: sides in pixels), the confusion
    matrix's operating point, how many worst frames, and the scoring of the headline."""

    edges: Mapping[str, Sequence[float]] = field(default_factory=lambda: {"size": SIZE_EDGES_PX, "distance": DISTANCE_EDGES_M})
    iou_threshold: float = 0.5
    score_threshold: float = 0.5
    worst_frames: int = 12
    max_dets: Sequence[int] = (1, 10, 100)
    thresholds: Thresholds = "coco"


@dataclass(frozen=True)
class Report:
    """Everything the page shows; ``frames`` maps image id to its file name (for the worst frames)."""

    title: str
    result: EvalResult
    breakdowns: list[Breakdown]
    confusion: ConfusionMatrix
    worst: list[FrameErrors]
    counts: dict[str, int]
    frames: dict[int, str]
    errors: ErrorTypes | None = None
    training: list[dict[str, float]] = field(default_factory=list)

    @property
    def curves(self) -> dict[str, dict[str, list[float]]]:
        """Per class with ground truth: precision at IoU 0.50 and averaged over 0.50:0.95 against
        recall, and F1 at IoU 0.50 against the score reached at each recall (area all, most detections)."""
        out = {}
        for k, (name, ap) in enumerate(self.result.per_class.items()):
            if ap < 0:
                continue
            at50 = self.result.precision[0, :, k, 0, -1]
            recall = RECALL_THRESHOLDS
            f1 = np.where(at50 + recall > 0, 2 * at50 * recall / np.maximum(at50 + recall, 1e-12), 0.0)
            out[name] = {"recall": recall.tolist(), "precision50": at50.tolist(), "precision": self.result.precision[:, :, k, 0, -1].mean(axis=0).tolist(),
                         "f1": f1.tolist()}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "headline": dict(zip(stat_names(self.result.max_dets), self.result.stats)),
            "per_class": dict(self.result.per_class),
            "counts": self.counts,
            "breakdowns": {b.attribute: b.to_dict() for b in self.breakdowns},
            "confusion": self.confusion.to_dict(),
            "error_types": None if self.errors is None else self.errors.to_dict(),
            "worst_frames": [{**f.to_dict(), "file_name": self.frames.get(f.image_id, str(f.image_id))} for f in self.worst],
            "frame_errors": [{**f.to_dict(), "file_name": self.frames.get(f.image_id, str(f.image_id))} for f in self.confusion.frames],
            "curves": self.curves,
            "training": self.training,
            "iou_thresholds": IOU_THRESHOLDS.tolist(),
        }


def build_report(
    title: str, ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], settings: ReportSettings = ReportSettings(),
    *, training: Sequence[Mapping[str, Any]] = (), class_names: Mapping[int, str] | None = None, detections_name: str = "detections",
) -> Report:
    """The report of ``detections`` (COCO results; ``detections_name`` names them in error messages) on
    ``ground_truth`` (a COCO dict whose annotations may carry attributes such as Cognata's ``distance``).
    ``training``: ``metrics.csv`` rows, if any. The detections are checked before anything else reads them."""
    with collection_paused():
        return _report(title, ground_truth, detections, settings, training, class_names, detections_name)


def _report(title: str, ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], settings: ReportSettings,
            training: Sequence[Mapping[str, Any]], class_names: Mapping[int, str] | None, detections_name: str) -> Report:
    bands = BandEvaluator(ground_truth, detections, max_dets=settings.max_dets, thresholds=settings.thresholds, class_names=class_names,
                          detections_name=detections_name)
    result = bands.headline()
    breakdowns = []
    for attribute in ["size", *bands.attributes()]:
        edges = settings.edges.get(attribute)
        if edges is not None:
            breakdowns.append(bands.breakdown(attribute, bands_from_edges(edges, UNITS.get(attribute, ""), squared=attribute == "size")))
    confusion = confusion_matrix(
        ground_truth, bands.detections, iou_threshold=settings.iou_threshold, score_threshold=settings.score_threshold, class_names=class_names,
    )
    counts = {
        "images": len(ground_truth["images"]),
        "ground_truth": sum(1 for ann in ground_truth["annotations"] if not ann.get("iscrowd", 0)),
        "detections": len(detections),
    }
    frames = {int(image["id"]): str(image.get("file_name", image["id"])) for image in ground_truth["images"]}
    errors = error_types(ground_truth, bands.detections, class_names)
    return Report(title, result, breakdowns, confusion, confusion.worst_frames(settings.worst_frames), counts, frames, errors, _numeric_rows(training))


def compare(base: Mapping[str, Any], other: Mapping[str, Any], frames: int = 12) -> dict[str, Any]:
    """``other - base`` for two reports' dicts (:meth:`Report.to_dict`) on the same ground truth: the
    headline, every breakdown cell's AP, and the frames whose error counts differ most.

    Raises ValueError when the two were not made on the same images and objects."""
    if base["counts"]["images"] != other["counts"]["images"] or base["counts"]["ground_truth"] != other["counts"]["ground_truth"]:
        raise ValueError(
            f"the two evaluations scored different ground truth ({base['counts']['images']} images, {base['counts']['ground_truth']} objects "
            f"against {other['counts']['images']} and {other['counts']['ground_truth']})"
        )
    headline = {name: _difference(value, other["headline"].get(name, MISSING)) for name, value in base["headline"].items()}
    breakdowns = {}
    for attribute, mine in base["breakdowns"].items():
        theirs = other["breakdowns"].get(attribute)
        if theirs is None:
            continue
        breakdowns[attribute] = {
            band: {name: _difference(cell["AP"], theirs["cells"][band][name]["AP"]) for name, cell in row.items() if name in theirs["cells"].get(band, {})}
            for band, row in mine["cells"].items() if band in theirs["cells"]
        }
    errors_base = {f["image_id"]: f for f in base["frame_errors"]}
    changed = []
    for frame in other["frame_errors"]:
        before = errors_base.get(frame["image_id"])
        if before is not None and before["total"] != frame["total"]:
            changed.append({"image_id": frame["image_id"], "file_name": frame["file_name"], "base": before["total"], "other": frame["total"],
                            "difference": frame["total"] - before["total"]})
    changed.sort(key=lambda f: (-abs(f["difference"]), f["image_id"]))
    errors = {}
    if base.get("error_types") and other.get("error_types"):
        errors = {kind: other["error_types"]["gained"][kind] - value for kind, value in base["error_types"]["gained"].items()}
    return {"base": base["title"], "other": other["title"], "headline": headline, "breakdowns": breakdowns, "error_types": errors,
            "frames": changed[:frames]}


def _difference(base: float, other: float) -> float | None:
    """``other - base``, None where either has nothing to measure (COCOeval's -1)."""
    return None if base < 0 or other < 0 else other - base


def _numeric_rows(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, float]]:
    """``metrics.csv`` rows with their numeric columns as floats (empty cells left out)."""
    out = []
    for row in rows:
        values = {}
        for key, value in row.items():
            try:
                values[key] = float(value)
            except (TypeError, ValueError):
                continue
        out.append(values)
    return out
