"""``ssd data synth`` and ``ssd data stats`` through the command-line entry point."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ssd.cli.main import main


def synth(capsys, fmt: str, out: Path, *extra: str) -> str:
    assert main(["data", "synth", "--format", fmt, "--out", str(out), "--images", "12", "--size", "48x64", "--seed", "4", *extra]) == 0
    return capsys.readouterr().out


def stats_json(capsys, kind: str, path: Path, *extra: str) -> dict:
    assert main(["data", "stats", "--dataset", kind, "--data-path", str(path), "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_synth_cognata_is_deterministic_and_in_the_real_layout(tmp_path: Path, capsys):
    assert "wrote 12 cognata images" in synth(capsys, "cognata", tmp_path / "a")
    synth(capsys, "cognata", tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert [str(f) for f in files][:1] == ["10001_Urban_Clear_Noon/Cognata_Camera_01_8M_ann/0000000100.csv"]
    assert len([f for f in files if f.suffix == ".png"]) == 12 and all(len(f.stem) == 10 for f in files)
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files)


def test_stats_cognata_json(tmp_path: Path, capsys):
    synth(capsys, "cognata", tmp_path / "data")
    report = stats_json(capsys, "cognata", tmp_path / "data", "--config", "test_8MP")
    assert report["images"] > 0 and report["objects"] == sum(report["per_class"].values())
    assert set(report["per_class"]) >= {"Car", "Pedestrian", "TrafficSign", "Traffic_light"}
    reasons = {item["reason"].split(":")[0] for item in report["skipped"]}
    assert reasons >= {"ignored class", "too far", "too small"}
    assert all(set(item) == {"path", "reason"} for item in report["skipped"])
    assert sum(report["sizes"].values()) == report["objects"]


def test_stats_coco_text_and_json(tmp_path: Path, capsys):
    synth(capsys, "coco", tmp_path / "coco")
    report = stats_json(capsys, "COCO", tmp_path / "coco")
    train = json.loads((tmp_path / "coco" / "annotations" / "instances_train2017.json").read_text())
    val = json.loads((tmp_path / "coco" / "annotations" / "instances_val2017.json").read_text())
    assert report["objects"] == len(train["annotations"]) + len(val["annotations"])
    skipped_train = len(train["images"]) - len({a["image_id"] for a in train["annotations"]})
    assert report["images"] == len(train["images"]) - skipped_train + len(val["images"])
    assert len(report["skipped"]) == skipped_train
    assert main(["data", "stats", "--dataset", "coco", "--data-path", str(tmp_path / "coco")]) == 0
    text = capsys.readouterr().out
    assert f"images kept:  {report['images']}" in text and "per class:" in text and "person" in text


def test_stats_errors_name_the_path(tmp_path: Path, capsys):
    assert main(["data", "stats", "--dataset", "cognata", "--data-path", str(tmp_path / "missing")]) == 2
    assert str(tmp_path / "missing") in capsys.readouterr().err
    assert main(["data", "synth", "--format", "coco", "--out", str(tmp_path), "--size", "48by64"]) == 2
    assert capsys.readouterr().err.strip() == "error: ssd data synth: argument --size: expected HxW such as 300x300, got '48by64'"


@pytest.mark.parametrize("kind", ["cognata", "coco"])
def test_verify_images_reports_images_that_do_not_decode_as_training_would(kind: str, tmp_path: Path, capsys):
    synth(capsys, kind, tmp_path / "data")
    if kind == "cognata":
        victim = sorted((tmp_path / "data").rglob("*.png"))[0]
    else:  # a validation image with objects
        val = json.loads((tmp_path / "data" / "annotations" / "instances_val2017.json").read_text())
        first = min(a["image_id"] for a in val["annotations"])
        victim = tmp_path / "data" / "val2017" / next(i["file_name"] for i in val["images"] if i["id"] == first)
    victim.write_bytes(victim.read_bytes()[:120])  # the header still reads
    headers_only = stats_json(capsys, kind, tmp_path / "data")
    verified = stats_json(capsys, kind, tmp_path / "data", "--verify-images")
    assert not any(item["path"] == str(victim) for item in headers_only["skipped"])
    (flagged,) = [item for item in verified["skipped"] if item["path"] == str(victim)]
    assert flagged["reason"].startswith("corrupt image: cannot decode")
    assert verified["images"] == headers_only["images"] - 1 and verified["objects"] < headers_only["objects"]
    assert verified["objects"] == sum(verified["per_class"].values()) == sum(verified["sizes"].values())
    assert main(["data", "stats", "--dataset", kind, "--data-path", str(tmp_path / "data"), "--verify-images", "--strict"]) == 2
    assert capsys.readouterr().err.strip().endswith(f"{victim}: {flagged['reason']} (strict mode)")
