"""``ssd evaluate`` and the seed's evaluate.py: COCO mAP of a predictions file, of a model, or of every epoch.

Three branches print the same report:

- ``--predictions PRED.json --annotations GT.json`` scores a COCO results file;
- ``--pretrained-model CKPT`` runs the model over the validation split of ``--dataset`` (one process
  or several under torchrun, detections gathered from every rank) and writes ``detections.json``
  (COCO results), ``metrics.json`` (the 12 statistics and per-class AP) and ``plots/`` to ``--output-dir``;
- ``--full-eval`` does the same for every ``{save-name}_ep{N}.pth`` of ``--save-folder`` in epoch
  order, appending one row per epoch to ``full_eval.csv`` in ``--output-dir``.

``--mlperf`` is the MLPerf Automotive scoring: 500 detections per image, score > 0.05, NMS 0.5, boxes
in original-image pixels, torchmetrics' thresholds.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssd.cli.flags import add_allow_other_config
from ssd.cli.outputs import holding, refuse_overwriting
from ssd.cli.report import add_report_settings, report_settings
from ssd.cli.train import add_common_arguments
from ssd.errors import SSDError

if TYPE_CHECKING:  # the heavy imports wait until a command runs
    from ssd.distributed import DistributedContext
    from ssd.engine.evaluate import Evaluation
    from ssd.engine.model_evaluation import EvaluationSpec, ModelEvaluation
    from ssd.evaluation import EvalResult

logger = logging.getLogger(__name__)

FULL_EVAL_CSV = "full_eval.csv"
RESULT_FILES = ("detections.json", "metrics.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Input (a predictions file, or a model and dataset), scoring and output flags."""
    predictions = parser.add_argument_group("score a predictions file")
    predictions.add_argument(
        "--predictions", type=Path, metavar="PRED.json",
        help="COCO results: a JSON list of {image_id, category_id, bbox [x, y, w, h] pixels, score}",
    )
    predictions.add_argument("--annotations", type=Path, metavar="GT.json", help="COCO-format ground truth")
    model = parser.add_argument_group("evaluate a model on the validation split (train.py's shared flags)")
    add_common_arguments(model)
    add_allow_other_config(model)
    model.add_argument("--full-eval", "--full_eval", action="store_true",
                       help="evaluate every {save-name}_ep{N}.pth of --save-folder in epoch order, one CSV row each")
    model.add_argument("--mlperf", action="store_true",
                       help="MLPerf scoring: 500 detections, score 0.05, NMS 0.5, torchmetrics thresholds")
    model.add_argument("--file-list", "--file_list", type=Path,
                       help="Cognata: CSV of the images to evaluate (e.g. MLPerf's val_set.csv), in its order, instead of the validation split")
    model.add_argument("--output-dir", type=Path, default=Path("evaluation"),
                       help="detections.json, metrics.json, plots/ and full_eval.csv (default ./evaluation)")
    parser.add_argument(
        "--thresholds", choices=("coco", "torchmetrics"), default="coco",
        help="IoU/recall thresholds: COCOeval's (default) or torchmetrics' float32 ones, as MLPerf scores",
    )
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true", help="print one JSON object {stats, per_class} instead of a table")
    output.add_argument("--plots", type=Path, metavar="DIR", help="write precision-recall curves and a per-class AP chart to DIR")
    output.add_argument("--report", action="store_true",
                        help="also write report.html and report.json to --output-dir (a model's evaluation; ssd report makes one later)")
    add_report_settings(output)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("evaluate", help="COCO mAP (12 COCOeval statistics and per-class AP) of predictions or a model")
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table (or ``--json``), write ``--plots``."""
    from ssd.evaluation import plot_precision_recall

    if args.predictions is not None:
        result = score_predictions(args)
    elif args.full_eval:
        return run_full_evaluation(args)
    else:
        result = run_model_evaluation(args)
        if result is None:  # a rank other than 0 of a distributed run: rank 0 reports
            return 0
    print(json.dumps(result.to_dict()) if args.json else result.table())
    if args.plots is not None:
        paths = plot_precision_recall(result, args.plots)
        logger.info("wrote %d plots to %s", len(paths), args.plots)
    return 0


def score_predictions(args: argparse.Namespace) -> EvalResult:
    """Score the ``--predictions`` file against ``--annotations``."""
    from ssd.evaluation import evaluate_coco

    if args.annotations is None:
        raise SSDError("--predictions needs --annotations GT.json")
    return evaluate_coco(args.annotations, args.predictions, thresholds=args.thresholds)


def evaluation_spec(args: argparse.Namespace) -> EvaluationSpec:
    """The model-evaluation flags as a plain value."""
    from ssd.engine.model_evaluation import EvaluationSpec

    return EvaluationSpec(
        config=args.config, data_path=args.data_path, dataset=args.dataset, model=args.model, file_list=args.file_list,
        batch_size=args.batch_size, num_workers=args.num_workers, precision=args.precision, channels_last=args.channels_last,
        cudnn_benchmark=args.cudnn_benchmark, nms_threshold=args.nms_threshold, thresholds=args.thresholds, mlperf=args.mlperf,
        strict=args.strict, allow_other_config=args.allow_other_config, cache_dir=args.output_dir,
    )


def model_evaluation(args: argparse.Namespace, context: DistributedContext, checkpoint: Path) -> ModelEvaluation:
    """:class:`ssd.engine.model_evaluation.ModelEvaluation` of the flags, with the process's memory policy."""
    from ssd.engine.model_evaluation import ModelEvaluation
    from ssd.heap_retention import heap_retention_for

    return ModelEvaluation(evaluation_spec(args), context, checkpoint, after_step=heap_retention_for(context.device))


def run_model_evaluation(args: argparse.Namespace) -> EvalResult | None:
    """Evaluate ``--pretrained-model`` on the validation split and write the results to ``--output-dir``.

    Returns the result on rank 0 and None on the other ranks of a distributed run.
    """
    from ssd.distributed import cleanup_distributed, setup_distributed

    if args.pretrained_model is None:
        raise SSDError("give --pretrained-model CKPT to evaluate a model (or --full-eval, or --predictions PRED.json)")
    refuse_overwriting([args.output_dir / name for name in RESULT_FILES], [args.pretrained_model], "--output-dir")
    context = setup_distributed(args.device, args.local_rank)
    try:
        with (
            holding(args.output_dir) if context.is_main else contextlib.nullcontext(),  # rank 0 writes the folder
            model_evaluation(args, context, args.pretrained_model) as evaluation,
        ):
            outcome = evaluation.evaluate()
            if context.is_main:
                description = {
                    "checkpoint": str(args.pretrained_model), **evaluation.describe(), "images": outcome.images,
                    "unreadable": {"count": len(outcome.unreadable), "images": outcome.unreadable},
                }
                write_results(args.output_dir, outcome.result, outcome.detections, description)
                if args.report:
                    write_evaluation_report(args, evaluation, outcome)
    finally:
        cleanup_distributed()
    if not context.is_main:
        return None
    report_unreadable(outcome.unreadable)
    return outcome.result


def write_evaluation_report(args: argparse.Namespace, evaluation: ModelEvaluation, outcome: Evaluation) -> None:
    """``report.html`` and ``report.json`` of the evaluation just made, beside its results."""
    from ssd.report import Source, dataset_reader, report_title, scored_ground_truth, training_rows, write_report

    ground_truth = scored_ground_truth(evaluation.dataset.coco_ground_truth(), outcome.unreadable, evaluation.dataset.root)
    checkpoint = str(args.pretrained_model)
    source = Source(ground_truth, outcome.detections, training_rows(checkpoint, args.output_dir), dataset_reader(evaluation.dataset), checkpoint,
                    thresholds=evaluation.thresholds)
    write_report(args.output_dir, report_title(source, args.output_dir), source, report_settings(args))


def report_unreadable(paths: list[str]) -> None:
    """Say on stderr which images could not be read and were left out of the score."""
    if paths:
        shown = ", ".join(paths[:5]) + (f" and {len(paths) - 5} more" if len(paths) > 5 else "")
        print(f"warning: {len(paths)} unreadable image{'s' if len(paths) > 1 else ''} left out of the score: {shown}", file=sys.stderr)


def write_results(output_dir: Path, result: EvalResult, detections: list[dict[str, Any]], description: dict[str, Any]) -> None:
    """``detections.json`` (COCO results), ``metrics.json`` and ``plots/`` under ``output_dir``."""
    from ssd.atomic_file import write_atomically
    from ssd.evaluation import plot_precision_recall, stat_labels

    output_dir.mkdir(parents=True, exist_ok=True)
    write_atomically(output_dir / RESULT_FILES[0], json.dumps(detections).encode())
    metrics = {**description, **result.to_dict(), "stat_labels": [label.strip() for label in stat_labels(result.max_dets)]}
    write_atomically(output_dir / RESULT_FILES[1], json.dumps(metrics, indent=1).encode())
    plots = plot_precision_recall(result, output_dir / "plots")
    logger.info("wrote detections.json, metrics.json and %d plots to %s", len(plots), output_dir)


def epoch_checkpoints(folder: Path, save_name: str) -> list[tuple[int, Path]]:
    """``(epoch, path)`` of every ``{save_name}_ep{N}.pth`` in ``folder`` (the trainer's names), by epoch."""
    pattern = re.compile(rf"{re.escape(save_name)}_ep(\d+)\.pth")
    found = sorted((int(match.group(1)), path) for path in folder.glob("*.pth") if (match := pattern.fullmatch(path.name)))
    if not found:
        raise SSDError(f"--full-eval: no {save_name}_ep<N>.pth checkpoint in {folder}")
    return found


def run_full_evaluation(args: argparse.Namespace) -> int:
    """Evaluate every epoch checkpoint of a training run, appending one CSV row per epoch."""
    from ssd.distributed import cleanup_distributed, setup_distributed
    from ssd.engine.run_log import append_row

    checkpoints = epoch_checkpoints(args.save_folder, args.save_name)
    csv_path = args.output_dir / FULL_EVAL_CSV
    context = setup_distributed(args.device, args.local_rank)
    try:
        with model_evaluation(args, context, checkpoints[0][1]) as evaluation:
            for number, (epoch, path) in enumerate(checkpoints):
                if number:
                    evaluation.load(path)
                outcome = evaluation.evaluate()
                result = outcome.result
                if not context.is_main:
                    continue
                report_unreadable(outcome.unreadable)
                row = {"epoch": epoch, "checkpoint": str(path), **result.metrics}
                row.update({f"AP/{name}": ap for name, ap in result.per_class.items()})
                append_row(csv_path, row)
                print(f"epoch {epoch}: mAP {result.map:.4f}  AP50 {result.metrics['AP50']:.4f}  ({path.name})", flush=True)
    finally:
        cleanup_distributed()
    if context.is_main:
        print(f"{len(checkpoints)} epochs evaluated; results appended to {csv_path}")
    return 0
