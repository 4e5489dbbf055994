"""LoadGen SUT: SingleStream runs in accuracy and performance mode, and scoring of the accuracy log."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from test_inference import TinyFiles, tiny_files  # noqa: F401 (fixture)

from ssd.cli.main import main
from ssd.config import load_config
from ssd.data import build_dataset
from ssd.loadgen import ACCURACY_LOG, LoadgenError, detection_rows, read_accuracy_log, score_accuracy_log

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


def test_performance_mode_reports_latency(tiny_files: TinyFiles, tmp_path: Path, capsys):
    output = tmp_path / "performance"
    argv = [*loadgen_flags(tiny_files, output), "--count", "2", "--min-duration", "0", "--min-query-count", "4"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "Mode: PerformanceOnly" in printed and "90.0th percentile latency (ns)" in printed
    assert "Result is" in (output / "mlperf_log_summary.txt").read_text()


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
