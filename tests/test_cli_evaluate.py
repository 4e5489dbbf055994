"""``ssd evaluate --predictions --annotations``: table, JSON, plots and one-line errors."""
from __future__ import annotations

import json

import pytest

from ssd.cli.main import main

GROUND_TRUTH = {
    "images": [{"id": 1}, {"id": 2}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [100, 100, 60, 50], "area": 3000, "iscrowd": 0},
        {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 200, 150], "area": 30000, "iscrowd": 0},
    ],
    "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "pedestrian"}, {"id": 3, "name": "truck"}],
}
# every object found exactly, plus a lower-scored false positive of car on image 2
PREDICTIONS = [
    {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
    {"image_id": 1, "category_id": 2, "bbox": [100, 100, 60, 50], "score": 0.8},
    {"image_id": 2, "category_id": 1, "bbox": [0, 0, 200, 150], "score": 0.7},
    {"image_id": 2, "category_id": 1, "bbox": [300, 300, 20, 20], "score": 0.1},
]


@pytest.fixture
def files(tmp_path):
    gt, pred = tmp_path / "gt.json", tmp_path / "pred.json"
    gt.write_text(json.dumps(GROUND_TRUTH))
    pred.write_text(json.dumps(PREDICTIONS))
    return gt, pred


def test_prints_cocoeval_table_and_per_class(files, capsys):
    gt, pred = files
    assert main(["evaluate", "--predictions", str(pred), "--annotations", str(gt)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 1.0000"
    assert lines[6] == " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 1.0000"
    assert lines[-3:] == ["car         1.0000", "pedestrian  1.0000", "truck       n/a (no ground truth)"]


def test_json_is_one_object(files, capsys):
    gt, pred = files
    assert main(["evaluate", "--predictions", str(pred), "--annotations", str(gt), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) == {"stats", "per_class"}
    # AP, AP50, AP75, AP small/medium/large, AR 1/10/100, AR small/medium/large: one object of each size
    assert result["stats"] == [1.0] * 12
    assert result["per_class"] == {"car": 1.0, "pedestrian": 1.0, "truck": -1.0}


def test_torchmetrics_thresholds(files, capsys):
    gt, pred = files
    assert main(["evaluate", "--predictions", str(pred), "--annotations", str(gt), "--json", "--thresholds", "torchmetrics"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"] == [1.0] * 12


def test_plots(files, tmp_path, capsys):
    gt, pred = files
    assert main(["evaluate", "--predictions", str(pred), "--annotations", str(gt), "--json", "--plots", str(tmp_path / "plots")]) == 0
    json.loads(capsys.readouterr().out)  # plots leave stdout to the JSON object
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["ap_per_class.png", "pr_00_car.png", "pr_01_pedestrian.png"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file or folder"),
        ("[{oops", "not valid JSON"),
        (json.dumps({"predictions": PREDICTIONS}), "expected a JSON list of detections"),
        (json.dumps([{**PREDICTIONS[0], "bbox": [1, 2]}]), "detection 0: bbox must be"),
        (json.dumps([{**PREDICTIONS[0], "image_id": 99}]), "image ids not in the ground truth"),
    ],
)
def test_bad_predictions_are_one_line_naming_the_file(files, capsys, content, message):
    gt, pred = files
    if content is None:
        pred.unlink()
    else:
        pred.write_text(content)
    assert main(["evaluate", "--predictions", str(pred), "--annotations", str(gt)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert str(pred) in captured.err and message in captured.err


def test_bad_annotations_name_the_file(files, capsys):
    gt, pred = files
    gt.write_text(json.dumps({"images": []}))
    assert main(["evaluate", "--predictions", str(pred), "--annotations", str(gt)]) == 2
    assert str(gt) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["evaluate", "--predictions", "pred.json"], "--predictions needs --annotations"),
        (["evaluate"], "--pretrained-model"),
    ],
)
def test_missing_inputs(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
