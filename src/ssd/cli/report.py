"""``ssd report DIR``: the evaluation report (``report.html``, ``report.json``) of an ``ssd evaluate``
folder (its ``detections.json`` and the dataset its ``metrics.json`` names) or of an ``ssd loadgen
--accuracy`` folder (its ``mlperf_log_accuracy.json``), without running the model."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ssd.cli.flags import dataset_name
from ssd.cli.ranges import BAND_EDGE, COUNT, IOU, SCORE
from ssd.errors import SSDError

if TYPE_CHECKING:
    from ssd.evaluation.report import ReportSettings


def add_report_settings(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """The report's bands, operating point and worst frames (``ssd report`` and ``ssd evaluate --report``)."""
    parser.add_argument("--size-edges", type=BAND_EDGE, nargs="+", default=None, metavar="PX",
                        help="box sides (sqrt of the area, pixels) between size bands; below the first and above the last "
                             "are bands too (default 16 32 96 256: COCO's small, medium and large, each split)")
    parser.add_argument("--distance-edges", type=BAND_EDGE, nargs="+", default=None, metavar="M",
                        help="Cognata: distance band edges in metres (default 0 50 100 200 300)")
    parser.add_argument("--score-threshold", type=SCORE, default=0.5, help="the confusion matrix's and worst frames' score (default 0.5)")
    parser.add_argument("--iou-threshold", type=IOU, default=0.5, help="the confusion matrix's and worst frames' IoU (default 0.5)")
    parser.add_argument("--worst", type=COUNT, default=12, help="worst frames shown (default 12)")


def report_settings(args: argparse.Namespace) -> ReportSettings:
    """The :class:`ssd.evaluation.report.ReportSettings` of the flags."""
    from ssd.evaluation.breakdown import DISTANCE_EDGES_M, SIZE_EDGES_PX
    from ssd.evaluation.report import ReportSettings

    size = SIZE_EDGES_PX if args.size_edges is None else (0.0, *sorted(set(args.size_edges)), float("inf"))
    distance = DISTANCE_EDGES_M if args.distance_edges is None else tuple(sorted(set(args.distance_edges)))
    if len(distance) < 2:
        raise SSDError("--distance-edges needs at least two edges")
    return ReportSettings(edges={"size": size, "distance": distance}, iou_threshold=args.iou_threshold,
                          score_threshold=args.score_threshold, worst_frames=args.worst)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="an HTML report of an evaluation or LoadGen accuracy folder: breakdowns, confusion matrix, worst frames")
    parser.add_argument("folder", type=Path, metavar="DIR",
                        help="an ssd evaluate --output-dir (detections.json, metrics.json) or an ssd loadgen --accuracy one (mlperf_log_accuracy.json)")
    parser.add_argument("--output-dir", type=Path, default=None, help="where report.html and report.json go (default EVAL_DIR)")
    parser.add_argument("--compare", type=Path, metavar="OTHER_DIR",
                        help="another evaluation folder on the same ground truth (fp32 vs INT8, epoch 20 vs 40): its differences from EVAL_DIR")
    source = parser.add_argument_group("the dataset (default: what DIR's metrics.json or ssd_run.json records)")
    source.add_argument("--config", default=None, help="config name or path (needed for a LoadGen folder, which records only its digest)")
    source.add_argument("--split", default=None, help="a LoadGen folder's split (default: the recorded one)")
    source.add_argument("--data-path", "--data_path", type=Path, default=None, help="dataset root")
    source.add_argument("--dataset", type=dataset_name, default=None, help="dataset kind (cognata, coco, preprocessed)")
    source.add_argument("--file-list", "--file_list", type=Path, default=None, help="Cognata: the CSV of the evaluated images")
    add_report_settings(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ssd.cli.outputs import holding
    from ssd.loadgen import ACCURACY_LOG
    from ssd.report import REPORT_FILES, detections_of_folder, report_of_folder, report_of_loadgen_run, report_title, write_report

    settings = report_settings(args)  # checked before the dataset loads
    out = args.output_dir or args.folder
    if not (args.folder / "metrics.json").exists() and (args.folder / ACCURACY_LOG).exists():  # a LoadGen accuracy run
        source = report_of_loadgen_run(args.folder, config=args.config, data_path=args.data_path, dataset=args.dataset, split=args.split,
                                       file_list=args.file_list, cache_dir=out)
    else:
        source = report_of_folder(args.folder, config=args.config, data_path=args.data_path, dataset=args.dataset,
                                  file_list=args.file_list, cache_dir=out)
    compared = None if args.compare is None else (str(args.compare / "detections.json"), detections_of_folder(args.compare))
    with holding(out):
        try:
            report = write_report(out, report_title(source, args.folder), source, settings, compared)
        except ValueError as exc:  # the comparison's ground truth differs
            raise SSDError(f"--compare {args.compare}: {exc}") from None
    print(f"mAP {report.result.map:.4f}; wrote {out / REPORT_FILES[0]} and {out / REPORT_FILES[1]}", file=sys.stdout)
    return 0
