"""LoadGen SUT: SingleStream runs in accuracy and performance mode, and scoring of the accuracy log."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from support import TinyFiles

from ssd.cli.main import main
from ssd.config import load_config
from ssd.data import build_dataset
from ssd.loadgen import ACCURACY_LOG, TRACE_LOG, LoadgenError, detection_rows, read_accuracy_log, score_accuracy_log

COUNT = 3


def loadgen_flags(files: TinyFiles, output: Path) -> list[str]:
    return ["loadgen", "--config", str(files.config), "--pretrained-model", str(files.checkpoint), "--data-path", str(files.data),
            "--device", "cpu", "--output-dir", str(output)]


def write_log(path: Path, rows_per_sample: dict[int, np.ndarray], repeat_first: bool = False) -> Path:
    """An accuracy log as LoadGen writes it: hex of the response bytes per sample."""
    entries = [{"seq_id": k, "qsl_idx": index, "data": rows.astype(np.float32).tobytes().hex().upper()}
               for k, (index, rows) in enumerate(rows_per_sample.items())]
    if repeat_first:  # LoadGen may log a sample twice; a different second copy must be ignored
        entries.append({**entries[0], "seq_id": len(entries), "data": np.zeros((1, 6), np.float32).tobytes().hex()})
    path.write_text(json.dumps(entries))
    return path


def test_accuracy_mode_writes_parses_and_scores_the_log(tiny_files: TinyFiles, tmp_path: Path, capsys):
    output = tmp_path / "accuracy"
    assert main([*loadgen_flags(tiny_files, output), "--scenario", "SingleStream", "--accuracy", "--count", str(COUNT)]) == 0
    printed = capsys.readouterr().out
    assert {"mlperf_log_accuracy.json", "mlperf_log_detail.txt", "mlperf_log_summary.txt"} <= {p.name for p in output.iterdir()}
    rows = read_accuracy_log(output / ACCURACY_LOG)
    assert sorted(rows) == list(range(COUNT))  # every sample of the QSL once
    dataset = build_dataset("cognata", tiny_files.data, "val", load_config(tiny_files.config))
    # each sample's rows are the Python API's detections of that image with MLPerf's decoding
    from dataclasses import asdict

    from ssd import Detector
    from ssd.decoding import DecodeSettings

    detector = Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config, **asdict(DecodeSettings.mlperf()))
    for index, result in enumerate(detector([dataset.image_path(k) for k in range(COUNT)])):
        np.testing.assert_allclose(rows[index], detection_rows(result), rtol=1e-5, atol=1e-3)
    result, samples = score_accuracy_log(output / ACCURACY_LOG, dataset)
    assert samples == COUNT and f"accuracy: {COUNT} samples scored" in printed and f"mAP = {result.map:.5f}" in printed
    report = (output / "accuracy.txt").read_text()  # what a submission's accuracy folder holds
    assert report in printed and report.endswith(f"mAP = {result.map:.5f}\n") and result.table() in report


def test_loaded_samples_are_staged_on_the_detectors_device(tiny_files: TinyFiles, monkeypatch):
    from ssd import Detector
    from ssd import loadgen

    staged = []
    monkeypatch.setattr(loadgen, "stage_on_device", lambda image, device: staged.append(device) or image.clone())
    detector = Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config, batch_size=2)
    sut = loadgen.DetectorSUT(detector, build_dataset("cognata", tiny_files.data, "val", load_config(tiny_files.config)))
    sut.load_samples([0, 1, 0])
    assert staged == [detector.device, detector.device] and sorted(sut.loaded) == [0, 1]
    image, size = sut.loaded[1]
    expected = detector.preprocess(sut.dataset.image_path(1))
    assert torch.equal(image, expected[0]) and size == expected[1]


def detail_settings(output: Path) -> dict[str, object]:
    """The settings LoadGen logged in ``mlperf_log_detail.txt`` (its ``:::MLLOG`` JSON lines)."""
    found = {}
    for line in (output / "mlperf_log_detail.txt").read_text().splitlines():
        if line.startswith(":::MLLOG "):
            entry = json.loads(line[len(":::MLLOG "):])
            found.setdefault(entry["key"], entry["value"])
    return found


def test_performance_mode_runs_under_the_benchmarks_settings_and_reports_the_999th_percentile(tiny_files: TinyFiles, tmp_path: Path, capsys):
    output = tmp_path / "performance"
    argv = [*loadgen_flags(tiny_files, output), "--count", "2", "--min-duration", "0", "--min-query-count", "4"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = (output / "mlperf_log_summary.txt").read_text()
    result_line = next(line for line in summary.splitlines() if line.startswith("99.9th percentile latency (ns)"))
    assert "Mode: PerformanceOnly" in printed and f"99.9th percentile latency (ns): {result_line.split(':')[1].strip()}" in printed
    assert "99.90 percentile latency (ns): " in printed and "Result is: " in printed
    logged = detail_settings(output)
    assert logged["requested_single_stream_target_latency_percentile"] == pytest.approx(0.999)
    assert (logged["requested_qsl_rng_seed"], logged["requested_sample_index_rng_seed"], logged["requested_schedule_rng_seed"]) == (
        1215947953, 295229089, 1380859451)
    assert (logged["requested_min_duration_ms"], logged["requested_min_query_count"]) == (0, 4)  # the flags' overrides
    assert logged["requested_performance_sample_count_override"] == 2  # 128, capped at the QSL's 2 samples
    assert (output / TRACE_LOG).read_text() == ""  # no trace unless asked for (LoadGen opens the file either way)


def test_a_trial_run_of_a_given_time_and_a_user_conf(tiny_files: TinyFiles, tmp_path: Path):
    user_conf = tmp_path / "user.conf"
    user_conf.write_text("ssd.SingleStream.target_latency = 250  # ms, the expected latency\n*.*.performance_sample_count_override = 1\n")
    output = tmp_path / "trial"
    assert main([*loadgen_flags(tiny_files, output), "--count", "3", "--time", "0.25", "--user-conf", str(user_conf), "--trace"]) == 0
    assert '"name":"IssueQuery"' in (output / TRACE_LOG).read_text()  # --trace: LoadGen's trace of every query
    logged = detail_settings(output)
    assert (logged["requested_min_duration_ms"], logged["requested_min_query_count"]) == (250, 1)
    assert logged["requested_single_stream_expected_latency_ns"] == pytest.approx(250e6)
    assert logged["requested_performance_sample_count_override"] == 1
    assert logged["requested_qsl_rng_seed"] == 1215947953  # still mlperf.conf's


def test_settings_file_errors_are_one_line_before_any_work(tiny_files: TinyFiles, tmp_path: Path, capsys):
    bad = tmp_path / "user.conf"
    bad.write_text("ssd.SingleStream.min_query_count = 10\n*.*.qsl_rng_seed = 1\n")
    for flags, expected in [
        (["--user-conf", str(bad)], "qsl_rng_seed may only be set in mlperf.conf"),
        (["--mlperf-conf", str(tmp_path / "none.conf")], "LoadGen settings file not found"),
        (["--time", "1", "--min-query-count", "3"], "--time sets the minimum duration"),
        (["--time", "nan"], "argument --time: a duration in seconds must be a finite number of at least 0, got nan"),
        (["--min-duration", "1e30"], r"--min-duration must be from 0 to 4.61e\+09 seconds, got 1e\+30"),  # LoadGen's ceiling
        (["--min-query-count", "0"], "argument --min-query-count: a count must be a whole number of at least 1, got 0"),
        (["--scenario", "SingleSteam"], "scenario 'SingleSteam' is not served"),
        (["--min-query-count", str(10**9)], "generates 1,000,000,000 queries before the first is issued"),
    ]:
        argv = loadgen_flags(tiny_files, tmp_path / "out")
        argv[argv.index("--pretrained-model") + 1] = str(tmp_path / "missing.pth")  # checked before any model loads
        assert main([*argv, *flags]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and re.search(expected, err[0]), err
    assert not (tmp_path / "out").exists()


def test_ground_truth_rows_score_perfectly(tiny_files: TinyFiles, tmp_path: Path):
    """Rows in original pixels with contiguous labels, as the SUT writes them, round-trip into COCO ids."""
    dataset = build_dataset("cognata", tiny_files.data, "val", load_config(tiny_files.config))
    rows = {}
    for index in range(len(dataset)):
        boxes, labels = dataset.target_pixels(index)
        rows[index] = detection_rows({"boxes": boxes, "labels": labels, "scores": torch.ones(len(labels))})
    result, samples = score_accuracy_log(write_log(tmp_path / "log.json", rows, repeat_first=True), dataset)
    assert samples == len(dataset) and result.map == pytest.approx(1.0)
    subset = {index: rows[index] for index in (0, 1)}  # scored over the samples in the log only
    assert score_accuracy_log(write_log(tmp_path / "part.json", subset), dataset)[1] == 2


def test_bad_logs_and_scenarios(tiny_files: TinyFiles, tmp_path: Path, capsys):
    with pytest.raises(LoadgenError, match="not found"):
        read_accuracy_log(tmp_path / "missing.json")
    (tmp_path / "odd.json").write_text(json.dumps([{"qsl_idx": 0, "data": "00" * 10}]))
    with pytest.raises(LoadgenError, match="whole number"):
        read_accuracy_log(tmp_path / "odd.json")
    dataset = build_dataset("cognata", tiny_files.data, "val", load_config(tiny_files.config))
    last = dataset.num_classes - 1
    for label, refused in ((1, False), (last, False), (0, True), (last + 1, True), (3.5, True), (-1, True)):
        log = write_log(tmp_path / "labels.json", {0: np.array([[1, 1, 9, 9, label, 0.9]])})
        if refused:  # MLPerf's scorer truncates the label; nothing is guessed here
            with pytest.raises(LoadgenError, match=rf"sample 0: detection label {label:g} is not one of the classes 1 to {last}"):
                score_accuracy_log(log, dataset)
        else:
            assert score_accuracy_log(log, dataset)[1] == 1
    with pytest.raises(LoadgenError, match="sample 0: a detection holds a value that is not finite"):
        score_accuracy_log(write_log(tmp_path / "nan.json", {0: np.array([[1, 1, np.nan, 9, 2, 0.9]])}), dataset)
    assert main([*loadgen_flags(tiny_files, tmp_path / "x"), "--scenario", "Offline", "--count", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "Offline" in err[0]


def test_unreadable_sample_fails_cleanly_after_the_run(tiny_files: TinyFiles, tmp_path: Path, capsys):
    """An error inside a LoadGen callback must not escape into LoadGen (it aborts the process)."""
    data = Path(shutil.copytree(tiny_files.data, tmp_path / "data"))
    broken = build_dataset("cognata", data, "val", load_config(tiny_files.config)).image_path(1)
    broken.write_bytes(broken.read_bytes()[:200])  # the PNG header survives, the pixels do not
    argv = [*loadgen_flags(tiny_files, tmp_path / "out"), "--accuracy", "--count", "2"]
    argv[argv.index("--data-path") + 1] = str(data)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: sample 1 ") and "no detections" in err[0]
    assert (tmp_path / "out" / ACCURACY_LOG).is_file()


def test_sample_indices_follow_a_file_list_with_an_empty_frame(tiny_files: TinyFiles, tmp_path: Path):
    """A listed frame without a kept object is a sample (no ground truth): the later samples keep their rows' indices."""
    import csv

    data = Path(shutil.copytree(tiny_files.data, tmp_path / "data"))
    val = build_dataset("cognata", data, "val", load_config(tiny_files.config))
    first, second = val.image_path(0), val.image_path(1)
    empty = first.with_name("9999999999.png")
    shutil.copyfile(first, empty)  # the same pixels as the first frame, annotated with an ignored class only
    annotation = Path(str(first.parent).replace("_png", "_ann")) / f"{first.stem}.csv"
    with open(annotation, newline="") as handle:
        header, row = list(csv.reader(handle))[:2]
    row[header.index("object_class")], row[header.index("object_class_name")] = "2", "Pole"
    with open(annotation.with_name("9999999999.csv"), "w", newline="") as handle:
        csv.writer(handle).writerows([header, row])
    listing = tmp_path / "val_set.csv"
    listing.write_text("img\n" + "".join(f"{p.relative_to(data).as_posix()}\n" for p in (first, empty, second)))
    output = tmp_path / "out"
    argv = [*loadgen_flags(tiny_files, output), "--accuracy", "--file-list", str(listing)]
    argv[argv.index("--data-path") + 1] = str(data)
    assert main(argv) == 0
    rows = read_accuracy_log(output / ACCURACY_LOG)
    assert sorted(rows) == [0, 1, 2] and len(rows[1]) > 0
    np.testing.assert_array_equal(rows[1], rows[0])  # sample 1 is the empty frame (the first frame's pixels)
    from dataclasses import asdict

    from ssd import Detector
    from ssd.decoding import DecodeSettings

    detector = Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config, **asdict(DecodeSettings.mlperf()))
    np.testing.assert_allclose(rows[2], detection_rows(detector([second])[0]), rtol=1e-5, atol=1e-3)  # not shifted
    listed = build_dataset("cognata", data, "val", load_config(tiny_files.config), file_list=listing)
    scored, samples = score_accuracy_log(output / ACCURACY_LOG, listed)
    assert samples == 3 and "mAP = " in (output / "accuracy.txt").read_text()


@pytest.mark.hostile("silence and vague words")
def test_images_without_ground_truth_are_refused_before_the_model_runs(tiny_files: TinyFiles, tmp_path: Path, capsys):
    """COCO mAP over images without objects is undefined (every statistic -1): refused, not reported."""
    from ssd.data.synth import synth_cognata

    root = synth_cognata(tmp_path / "empty", 3, size=(72, 120), objects=(0, 0), seed=2).root
    frames = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    listing = tmp_path / "val_set.csv"
    listing.write_text("img\n" + "".join(f"{frame}\n" for frame in frames))
    common = ["--config", str(tiny_files.config), "--pretrained-model", str(tiny_files.checkpoint), "--device", "cpu",
              "--dataset", "cognata", "--data-path", str(root), "--file-list", str(listing)]
    for argv in (["evaluate", *common, "--num-workers", "0", "--output-dir", str(tmp_path / "eval")],
                 ["loadgen", *common, "--accuracy", "--output-dir", str(tmp_path / "loadgen")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "none of the 3 images evaluated has a ground-truth object" in err[0], err
    assert not (tmp_path / "eval" / "metrics.json").exists() and not (tmp_path / "loadgen").exists()
