"""COCO-style evaluation of detections: scoring (faster-coco-eval), conversion and gathering, plots.

Training, the CLIs and the benchmarks all score through :func:`evaluate_coco`, whose numbers equal
pycocotools' ``COCOeval`` and torchmetrics' ``MeanAveragePrecision(backend="faster_coco_eval",
class_metrics=True)`` (the MLPerf Automotive scorer).
"""
from ssd.evaluation.coco_eval import EvalResult, EvaluationError, evaluate_coco, score_detections, stat_labels, stat_names
from ssd.evaluation.detections import detections_to_coco, merge_detections
from ssd.evaluation.plots import plot_precision_recall

__all__ = [
    "EvalResult",
    "EvaluationError",
    "detections_to_coco",
    "evaluate_coco",
    "merge_detections",
    "plot_precision_recall",
    "score_detections",
    "stat_labels",
    "stat_names",
]
