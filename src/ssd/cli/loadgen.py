"""``ssd loadgen``: run the detector under MLPerf LoadGen; in accuracy mode, score the accuracy log."""
from __future__ import annotations

import argparse
from pathlib import Path

from ssd.cli.predict import BACKEND_HELP, BACKENDS, PRECISION_HELP, PRECISIONS, build_detector
from ssd.cli.train import DATASET_HELP, add_allow_other_config, add_cudnn_benchmark, dataset_name
from ssd.errors import SSDError

# summary lines worth printing, in order, when LoadGen wrote them ("{result}": the line of the
# target percentile, "99.9th percentile latency (ns)" under the benchmark's settings)
SUMMARY_KEYS = (
    "Scenario", "Mode", "Result is", "{result}", "99.90 percentile latency (ns)", "QPS w/o loadgen overhead", "Mean latency (ns)",
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("loadgen", help="run MLPerf LoadGen (performance or accuracy) over a dataset split")
    parser.add_argument("--config", required=True, help="config name or path")
    parser.add_argument("--pretrained-model", "--pretrained_model", type=Path, help="checkpoint (run by PyTorch)")
    parser.add_argument("--num-classes", "--num_classes", type=int, help="classes incl. background, when the checkpoint cannot tell")
    parser.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    parser.add_argument("--onnx", type=Path, help="model exported by `ssd export`, float32 or INT8 (run by OpenVINO or ONNX Runtime)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help=PRECISION_HELP)
    parser.add_argument("--data-path", "--data_path", required=True, type=Path, help="dataset root")
    parser.add_argument("--dataset", type=dataset_name, default="cognata", help=f"{DATASET_HELP}; default Cognata")
    parser.add_argument("--split", default="val", help="dataset split (default val)")
    parser.add_argument("--file-list", type=Path, help="Cognata: CSV of image paths (e.g. MLPerf's val_set.csv) instead of the split")
    parser.add_argument("--scenario", default="SingleStream", help="SingleStream, or ConstantStream where the installed LoadGen has it")
    parser.add_argument("--accuracy", action="store_true", help="accuracy mode: every sample once, then score the accuracy log")
    parser.add_argument("--count", type=int, help="samples: the first N images of the split (default all)")
    parser.add_argument("--performance-sample-count", type=int, help="samples kept in memory in performance mode (default: the settings', 128)")
    parser.add_argument("--mlperf-conf", type=Path, help="LoadGen mlperf.conf with the benchmark's rules (default: MLPerf Automotive's, shipped)")
    parser.add_argument("--user-conf", type=Path, help="LoadGen user.conf, read after --mlperf-conf")
    parser.add_argument("--time", type=float, help="a trial run of about this many seconds (minimum duration, one query minimum)")
    parser.add_argument("--min-duration", type=float, help="LoadGen minimum duration in seconds (default: the settings', 600)")
    parser.add_argument("--min-query-count", type=int, help="LoadGen minimum number of queries (default: the settings', 6636)")
    parser.add_argument("--output-dir", type=Path, default=Path("loadgen_output"), help="LoadGen logs (default loadgen_output)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    parser.add_argument("--batch-size", type=int, default=1, help="samples per forward pass when a query holds several (default 1)")
    add_allow_other_config(parser)
    add_cudnn_benchmark(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run LoadGen, print the summary's key figures and, in accuracy mode, the mAP of the accuracy log."""
    from dataclasses import asdict

    from ssd.checkpoint import check_dataset_fits
    from ssd.data.kinds import dataset_kind
    from ssd.loadgen import ACCURACY_TXT, LoadgenSettings, accuracy_report, run_loadgen, score_accuracy_log
    from ssd.loadgen_conf import DEFAULT_MLPERF_CONF, ConfFiles, check_seconds
    from ssd.decoding import DecodeSettings

    for flag, value in (("--batch-size", args.batch_size), ("--count", args.count), ("--performance-sample-count", args.performance_sample_count),
                        ("--min-query-count", args.min_query_count)):
        if value is not None and value < 1:
            raise SSDError(f"{flag} must be at least 1, got {value}")
    for flag, seconds in (("--time", args.time), ("--min-duration", args.min_duration)):
        if seconds is not None:
            try:
                check_seconds(seconds)
            except ValueError as exc:
                raise SSDError(f"{flag} {exc}") from None
    if args.time is not None and (args.min_duration is not None or args.min_query_count is not None):
        raise SSDError("--time sets the minimum duration and query count: give it alone, or --min-duration / --min-query-count")
    conf = ConfFiles(args.mlperf_conf or DEFAULT_MLPERF_CONF, args.user_conf)
    settings = LoadgenSettings(  # the settings files and these flags, checked before the model loads
        scenario=args.scenario, accuracy=args.accuracy, count=args.count, performance_sample_count=args.performance_sample_count,
        min_duration_s=args.time if args.time is not None else args.min_duration,
        min_query_count=1 if args.time is not None else args.min_query_count, conf=conf,
    )
    detector = build_detector(args, asdict(DecodeSettings.mlperf()))  # 500 detections, score > 0.05, NMS 0.5
    dataset = dataset_kind(args.dataset).build(
        args.data_path, args.split, detector.config, label_map=detector.metadata.get("label_map"), file_list=args.file_list,
    )
    check_dataset_fits(detector.metadata, len(detector.class_names), dataset, str(args.pretrained_model or args.onnx))
    result = run_loadgen(detector, dataset, settings, args.output_dir)
    result_key = next((key for key in result.summary if key.endswith("th percentile latency (ns)")), None)
    for key in SUMMARY_KEYS:
        key = result_key if key == "{result}" else key
        if key in result.summary:
            print(f"{key}: {result.summary[key]}")
    print(f"LoadGen logs in {result.output_dir}")
    if args.accuracy:
        scored, samples = score_accuracy_log(result.accuracy_log, dataset)
        report = accuracy_report(scored, samples, result.accuracy_log)
        (result.output_dir / ACCURACY_TXT).write_text(report)
        print(report, end="")
    return 0
