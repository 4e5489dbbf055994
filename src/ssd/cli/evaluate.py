"""``ssd evaluate``: COCO mAP of detections against COCO-format ground truth.

Today it scores a predictions file (``--predictions PRED.json --annotations GT.json``); evaluating a
model on a dataset is the other branch, :func:`run_model_evaluation`. Both print the same report.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ssd.errors import SSDError
from ssd.evaluation import EvalResult, evaluate_coco, plot_precision_recall

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Input (a predictions file), scoring and output flags."""
    predictions = parser.add_argument_group("score a predictions file")
    predictions.add_argument(
        "--predictions", type=Path, metavar="PRED.json",
        help="COCO results: a JSON list of {image_id, category_id, bbox [x, y, w, h] pixels, score}",
    )
    predictions.add_argument("--annotations", type=Path, metavar="GT.json", help="COCO-format ground truth")
    parser.add_argument(
        "--thresholds", choices=("coco", "torchmetrics"), default="coco",
        help="IoU/recall thresholds: COCOeval's (default) or torchmetrics' float32 ones, as MLPerf scores",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print one JSON object {stats, per_class} instead of a table")
    output.add_argument("--plots", type=Path, metavar="DIR", help="write precision-recall curves and a per-class AP chart to DIR")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="COCO mAP (12 COCOeval statistics and per-class AP)")
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table (or ``--json``), write ``--plots``."""
    result = score_predictions(args) if args.predictions is not None else run_model_evaluation(args)
    print(json.dumps(result.to_dict()) if args.json else result.table())
    if args.plots is not None:
        paths = plot_precision_recall(result, args.plots)
        logger.info("wrote %d plots to %s", len(paths), args.plots)
    return 0


def score_predictions(args: argparse.Namespace) -> EvalResult:
    """Score the ``--predictions`` file against ``--annotations``."""
    if args.annotations is None:
        raise SSDError("--predictions needs --annotations GT.json")
    return evaluate_coco(args.annotations, args.predictions, thresholds=args.thresholds)


def run_model_evaluation(args: argparse.Namespace) -> EvalResult:
    """Run a model over a dataset and score its detections (to come: --config, --pretrained-model, ...)."""
    raise SSDError("model evaluation is not available yet: give --predictions PRED.json --annotations GT.json")
