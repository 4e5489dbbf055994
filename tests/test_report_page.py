"""``ssd evaluate --report`` and ``ssd report``: the page made from an evaluation's folder on the tiny
Cognata and COCO sets, and opened in a real browser (Debian's Chromium, headless)."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from support import PageNumbers, TinyFiles, model_flags, page_value

from ssd.cli.main import main

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars", "--window-size=1366,768"]


@pytest.fixture(scope="module")
def evaluated(tiny_files: TinyFiles, tmp_path_factory) -> Path:
    """An ``ssd evaluate --report`` folder of the tiny model (score 0.05, so that its worst frames have boxes)."""
    folder = tmp_path_factory.mktemp("evaluated")
    assert main(["evaluate", *model_flags(tiny_files), "--dataset", "cognata", "--data-path", str(tiny_files.data), "--batch-size", "4",
                 "--num-workers", "0", "--output-dir", str(folder), "--report", "--score-threshold", "0.05"]) == 0
    return folder


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's Chromium, installed with apt-get where it is missing and this user may install packages."""
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
        if subprocess.run(install, capture_output=True, env=env, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=900)
            subprocess.run(install, capture_output=True, env=env, timeout=900)
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("Chromium is not installed and could not be (apt-get install chromium needs root and Debian's package registry)")
    return found


def test_evaluate_report_and_the_folder_command_agree_with_the_evaluation(evaluated: Path, tmp_path: Path, capsys):
    metrics = json.loads((evaluated / "metrics.json").read_text())
    written = json.loads((evaluated / "report.json").read_text())
    assert written["headline"]["mAP"] == metrics["stats"][0] and written["per_class"] == metrics["per_class"]
    assert set(written["breakdowns"]) == {"size", "distance"}  # Cognata's distances
    assert written["breakdowns"]["distance"]["cells"]["all"]["all"]["AP"] == metrics["stats"][0]
    assert written["counts"]["images"] == metrics["images"]
    again = tmp_path / "again"
    assert main(["report", str(evaluated), "--output-dir", str(again), "--score-threshold", "0.05"]) == 0
    assert json.loads((again / "report.json").read_text()) == written
    assert (again / "report.html").read_bytes() == (evaluated / "report.html").read_bytes()
    assert "mAP" in capsys.readouterr().out


def test_a_comparison_of_a_folder_with_itself_is_all_zeros(evaluated: Path, tmp_path: Path):
    assert main(["report", str(evaluated), "--compare", str(evaluated), "--output-dir", str(tmp_path), "--score-threshold", "0.05"]) == 0
    comparison = json.loads((tmp_path / "report.json").read_text())["comparison"]
    assert comparison["headline"]["mAP"] == 0.0 and comparison["frames"] == []


def test_a_folder_that_is_not_an_evaluation_is_named(tmp_path: Path, capsys):
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path / "metrics.json") in err and "missing" in err
    (tmp_path / "metrics.json").write_text("{")
    (tmp_path / "detections.json").write_text("[]")
    assert main(["report", str(tmp_path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


@pytest.mark.hostile("malformed records")
@pytest.mark.parametrize("fault, message", [
    ("bbox", "detection 3: bbox must be 4 finite numbers"),
    ("image_id", "detections for 1 image ids not in the ground truth (e.g. 999)"),
    ("score", "detection 3: score must be finite"),
])
def test_a_bad_detection_is_named_with_its_file(evaluated: Path, tmp_path: Path, capsys, fault: str, message: str):
    """In the folder reported on and in the folder compared with: one error line naming the file, nothing written."""
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(evaluated / "metrics.json", bad)
    detections = json.loads((evaluated / "detections.json").read_text())
    detections[3][fault] = {"bbox": [1, 2, -3, 4], "image_id": 999, "score": float("nan")}[fault]
    (bad / "detections.json").write_text(json.dumps(detections))
    for argv in (["report", str(bad)], ["report", str(evaluated), "--compare", str(bad), "--output-dir", str(tmp_path / "out")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"error: {bad / 'detections.json'}: ") and message in err[0], err
    assert not (bad / "report.html").exists() and not (tmp_path / "out" / "report.html").exists()


def test_a_coco_evaluation_reports_sizes_only(tiny_coco_evaluation: Path):
    written = json.loads((tiny_coco_evaluation / "report.json").read_text())
    assert list(written["breakdowns"]) == ["size"]
    metrics = json.loads((tiny_coco_evaluation / "metrics.json").read_text())
    assert written["breakdowns"]["size"]["cells"]["all"]["all"]["AP"] == written["headline"]["mAP"] == metrics["stats"][0]


@pytest.fixture
def tiny_coco_evaluation(tiny_files: TinyFiles, tmp_path: Path) -> Path:
    """A tiny model of the generated COCO set's 4 classes evaluated on it, then ``ssd report`` of the folder."""
    import torch

    from ssd.config import load_config
    from ssd.data.synth import synth_coco
    from ssd.models import build_model

    data = synth_coco(tmp_path / "coco", 15, size=(64, 128), seed=2, objects=(1, 3)).root
    torch.manual_seed(0)
    checkpoint = tmp_path / "coco.pth"
    text = tiny_files.config.read_text()
    torch.save({"epoch": 0, "model_state_dict": build_model(load_config(tiny_files.config), 5).state_dict(), "arch": "ssd", "num_classes": 5,
                "config": {"name": tiny_files.config.stem, "source": str(tiny_files.config), "text": text}}, checkpoint)
    folder = tmp_path / "evaluation"
    assert main(["evaluate", "--config", str(tiny_files.config), "--pretrained-model", str(checkpoint), "--device", "cpu", "--dataset", "coco",
                 "--data-path", str(data), "--num-workers", "0", "--output-dir", str(folder)]) == 0
    assert main(["report", str(folder), "--score-threshold", "0.05"]) == 0
    return folder


def test_the_page_opens_in_chromium_without_errors_with_its_images_and_headline_on_the_first_screen(evaluated: Path, chromium: str, tmp_path: Path):
    page = (evaluated / "report.html").as_uri()
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
    dumped = subprocess.run([*common, "--dump-dom", page], capture_output=True, text=True, timeout=120)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    console = [line for line in dumped.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []  # no error, nor any other message
    numbers = json.loads((evaluated / "report.json").read_text())
    body = PageNumbers()
    body.feed(dumped.stdout)
    assert body.numbers["headline.mAP"] == f"{numbers['headline']['mAP']:.4f}"
    assert all(text == f"{page_value(numbers, key):.4f}" for key, text in body.numbers.items() if key.startswith("headline."))
    images = dumped.stdout.split('data-images="')[1].split('"')[0]
    shown, loaded = map(int, images.split(":"))
    assert shown == 2 * len(numbers["worst_frames"]) > 0 and loaded == shown  # thumbnails and full frames all decoded
    bottom, height = map(int, dumped.stdout.split('data-headline-bottom="')[1].split('"')[0].split(":"))
    assert 0 < bottom <= height  # the headline numbers are on the first screen
    shot = tmp_path / "first_screen.png"
    assert subprocess.run([*common, f"--screenshot={shot}", page], capture_output=True, timeout=120).returncode == 0
    width, rows = _png_rows(shot.read_bytes())
    assert width == 1366
    headline = rows[:bottom]
    assert len({row for row in headline}) > 10  # text drawn where the headline is, not a blank band


def _png_rows(data: bytes) -> tuple[int, list[bytes]]:
    """Width and raw scanlines (filter byte included) of a non-interlaced 8-bit RGB(A) PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    offset, chunks, width = 8, [], 0
    while offset < len(data):
        (length,), kind = struct.unpack(">I", data[offset:offset + 4]), data[offset + 4:offset + 8]
        body = data[offset + 8:offset + 8 + length]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            stride = 1 + width * (3 if colour == 2 else 4)
        elif kind == b"IDAT":
            chunks.append(body)
        offset += 12 + length
    raw = zlib.decompress(b"".join(chunks))
    return width, [raw[k:k + stride] for k in range(0, len(raw), stride)]
