"""``ssd loadgen``: run the detector under MLPerf LoadGen; in accuracy mode, score the accuracy log."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ssd.cli.flags import add_data, add_detector
from ssd.cli.outputs import holding, refuse_overwriting
from ssd.cli.predict import build_detector, detector_spec
from ssd.cli.ranges import COUNT, SECONDS
from ssd.errors import SSDError

# summary lines worth printing, in order, when LoadGen wrote them ("{result}": the line of the
# target percentile, "99.9th percentile latency (ns)" under the benchmark's settings)
SUMMARY_KEYS = (
    "Scenario", "Mode", "Result is", "{result}", "99.90 percentile latency (ns)", "QPS w/o loadgen overhead", "Mean latency (ns)",
)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("loadgen", help="run MLPerf LoadGen (performance or accuracy) over a dataset split")
    add_detector(parser, config_default=None, batch_size=1, batch_help="samples per forward pass when a query holds several")
    add_data(parser.add_argument_group("samples"), path_required=True, what="samples")
    parser.add_argument("--scenario", default="SingleStream", help="SingleStream, or ConstantStream where the installed LoadGen has it")
    parser.add_argument("--accuracy", action="store_true", help="accuracy mode: every sample once, then score the accuracy log")
    parser.add_argument("--audit", choices=("TEST01",), help="run MLPerf's compliance test TEST01 (performance mode with sampled "
                        "responses) and verify it against --accuracy-run and --performance-run")
    parser.add_argument("--accuracy-run", type=Path, help="--audit: the --output-dir of this model's accuracy run")
    parser.add_argument("--performance-run", type=Path, help="--audit: the --output-dir of this model's performance run")
    parser.add_argument("--count", type=COUNT, help="samples: the first N images of the split (default all)")
    parser.add_argument("--performance-sample-count", type=COUNT, help="samples kept in memory in performance mode (default: the settings', 128)")
    parser.add_argument("--mlperf-conf", type=Path, help="LoadGen mlperf.conf with the benchmark's rules (default: MLPerf Automotive's, shipped)")
    parser.add_argument("--user-conf", type=Path, help="LoadGen user.conf, read after --mlperf-conf")
    parser.add_argument("--time", type=SECONDS, help="a trial run of about this many seconds (minimum duration, one query minimum)")
    parser.add_argument("--min-duration", type=SECONDS, help="LoadGen minimum duration in seconds (default: the settings', 600)")
    parser.add_argument("--min-query-count", type=COUNT, help="LoadGen minimum number of queries (default: the settings', 6636)")
    parser.add_argument("--output-dir", type=Path, default=Path("loadgen_output"), help="LoadGen logs (default loadgen_output)")
    parser.add_argument("--trace", action="store_true", help="also write LoadGen's trace of every query (mlperf_log_trace.json, for "
                        "a trace viewer); off by default, as in the reference harness")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run LoadGen, print the summary's key figures and, in accuracy mode, the mAP of the accuracy log."""
    from dataclasses import asdict

    from ssd.checkpoint import check_dataset_fits
    from ssd.data.kinds import dataset_kind
    from ssd.atomic_file import write_atomically
    from ssd.compliance import audit_config_file, check_audited_runs, verify_audit
    from ssd.loadgen import ACCURACY_TXT, LOADGEN_LOGS, LoadgenSettings, accuracy_report, run_loadgen, samples_of, score_accuracy_log
    from ssd.run_record import RECORD_NAME
    from ssd.loadgen_conf import DEFAULT_MLPERF_CONF, ConfFiles, check_seconds
    from ssd.decoding import DecodeSettings

    for flag, seconds in (("--time", args.time), ("--min-duration", args.min_duration)):
        if seconds is not None:
            try:
                check_seconds(seconds)
            except ValueError as exc:
                raise SSDError(f"{flag} {exc}") from None
    if args.time is not None and (args.min_duration is not None or args.min_query_count is not None):
        raise SSDError("--time sets the minimum duration and query count: give it alone, or --min-duration / --min-query-count")
    conf = ConfFiles(args.mlperf_conf or DEFAULT_MLPERF_CONF, args.user_conf)
    written = [args.output_dir / name for name in (*LOADGEN_LOGS, ACCURACY_TXT, RECORD_NAME)]
    refuse_overwriting(written, [path for path in (args.pretrained_model, args.onnx, args.user_conf, args.mlperf_conf, args.file_list)
                                 if path is not None], "--output-dir")
    settings = LoadgenSettings(  # the settings files and these flags, checked before the model loads
        scenario=args.scenario, accuracy=args.accuracy, count=args.count, performance_sample_count=args.performance_sample_count,
        min_duration_s=args.time if args.time is not None else args.min_duration,
        min_query_count=1 if args.time is not None else args.min_query_count, conf=conf, trace=args.trace,
    )
    if args.audit is not None and (args.accuracy or args.accuracy_run is None or args.performance_run is None):
        raise SSDError("--audit TEST01 is a performance run checked against --accuracy-run DIR and --performance-run DIR (not --accuracy)")
    if args.audit is None and (args.accuracy_run is not None or args.performance_run is not None):
        raise SSDError("--accuracy-run and --performance-run are the runs --audit TEST01 checks; give --audit")
    spec, why = detector_spec(args)  # the precision auto chose is the record's model.precision
    decode = asdict(DecodeSettings.mlperf())  # 500 detections, score > 0.05, NMS 0.5
    detector = build_detector(spec, decode, why)
    dataset = dataset_kind(args.dataset).build(
        args.data_path, args.split, detector.config, label_map=detector.metadata.get("label_map"), file_list=args.file_list,
    )
    check_dataset_fits(detector.metadata, len(detector.class_names), dataset, str(spec.model_file))
    samples = samples_of(settings, dataset)
    if args.accuracy:
        dataset.require_ground_truth(range(samples))  # before the run: no objects, no mAP
    record = run_record(args, spec.model_file, detector, decode, settings, samples)
    if args.audit is not None:
        check_audited_runs(args.audit, args.accuracy_run, args.performance_run, record)  # before the run, not after it
    with holding(args.output_dir):
        if args.audit is None:
            result = run_loadgen(detector, dataset, settings, args.output_dir)
        else:
            with audit_config_file(args.audit) as audit_config:
                result = run_loadgen(detector, dataset, settings, args.output_dir, audit_config)
        record.write(result.output_dir)
    result_key = next((key for key in result.summary if key.endswith("th percentile latency (ns)")), None)
    for key in SUMMARY_KEYS:
        key = result_key if key == "{result}" else key
        if key in result.summary:
            print(f"{key}: {result.summary[key]}")
    print(f"LoadGen logs in {result.output_dir}")
    if args.accuracy:
        scored, samples = score_accuracy_log(result.accuracy_log, dataset)
        report = accuracy_report(scored, samples, result.accuracy_log)
        write_atomically(result.output_dir / ACCURACY_TXT, report.encode())
        print(report, end="")
    if args.audit is not None:
        verdict = verify_audit(args.audit, args.accuracy_run, args.performance_run, result.output_dir)
        print(verdict.summary(), end="")
        return 0 if verdict.passed else 1
    return 0


def run_record(args: argparse.Namespace, weights: Path, detector: Any, decode: dict[str, Any], settings: Any, samples: int) -> Any:
    """What this run runs, for ``ssd_run.json`` (:mod:`ssd.run_record`)."""
    from ssd.onnx_export import is_int8
    from ssd.run_record import RunRecord, file_digest, text_digest

    engine = detector.engine
    model = {"file": Path(weights).name, "sha256": file_digest(weights), "engine": engine, "precision": detector.precision,
             "weights": "int8" if is_int8(detector.metadata) else detector.precision}
    if detector.device.type == "cuda":
        import torch

        model["device_name"] = torch.cuda.get_device_name(detector.device)
    return RunRecord(
        mode=args.audit or ("accuracy" if args.accuracy else "performance"),
        scenario=args.scenario,
        model=model,
        config={"name": detector.config.name, "sha256": text_digest(detector.config.text)},
        decode=decode,
        dataset={"kind": args.dataset, "path": str(Path(args.data_path).resolve()), "split": args.split, "samples": samples,
                 "file_list_sha256": None if args.file_list is None else file_digest(args.file_list)},
        mlperf_conf=settings.conf.mlperf_conf.read_text(encoding="utf-8"),
        user_conf=None if settings.conf.user_conf is None else settings.conf.user_conf.read_text(encoding="utf-8"),
        overrides={"min_duration_s": settings.min_duration_s, "min_query_count": settings.min_query_count,
                   "performance_sample_count": settings.performance_sample_count},
        device=str(detector.device), batch_size=args.batch_size,
        command=["ssd", *args.argv],
        software=_versions("ssd", "torch", "mlcommons-loadgen", *([engine] if engine != "torch" else [])),  # engines' packages: their names
    )


def _versions(*packages: str) -> dict[str, str]:
    """The installed versions of ``packages`` (those installed)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            pass
    return found
