"""TIDE's error types (``ssd.evaluation.error_types``) against ``tidecv`` itself on generated cases, and on
hand-built images where each error type is known."""
from __future__ import annotations

import contextlib
import io

import pytest
from tidecv import TIDE, Data

from support import synthetic_case

from ssd.evaluation.error_types import ERROR_TYPES, error_types


def tidecv_errors(gt: dict, detections: list[dict]) -> tuple[float, dict[str, float], dict[str, int]]:
    """tidecv's AP50, AP gained per error type (main and special) and error counts, in 0-1 units."""
    truth, predicted = Data("gt", max_dets=100), Data("predictions", max_dets=100)
    for image in gt["images"]:
        truth.add_image(image["id"], str(image["id"]))
    for category in gt["categories"]:
        truth.add_class(category["id"], category["name"])
    for ann in gt["annotations"]:
        if ann.get("iscrowd", 0):
            truth.add_ignore_region(ann["image_id"], ann["category_id"], ann["bbox"])
        else:
            truth.add_ground_truth(ann["image_id"], ann["category_id"], ann["bbox"])
    for det in detections:
        predicted.add_detection(det["image_id"], det["category_id"], det["score"], det["bbox"])
    tide = TIDE()
    with contextlib.redirect_stdout(io.StringIO()):
        run = tide.evaluate(truth, predicted, mode=TIDE.BOX)
        gained = {**tide.get_main_errors()["predictions"], **tide.get_special_errors()["predictions"]}
    counts = {error.short_name: len(found) for error, found in run.error_dict.items()}
    return run.ap / 100, {name: value / 100 for name, value in gained.items()}, counts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_tidecv_on_generated_cases(seed: int):
    """Noisy copies with wrong classes, random boxes, crowd regions, images over 100 detections."""
    gt, dets = synthetic_case(seed)
    ap50, gained, counts = tidecv_errors(gt, dets)
    ours = error_types(gt, dets)
    assert ours.ap50 == pytest.approx(ap50, abs=1e-12)
    assert ours.gained == pytest.approx(gained, abs=1e-12)
    assert ours.counts == {name: counts[name] for name in ERROR_TYPES}
    assert all(counts[name] for name in ("Cls", "Loc", "Both", "Bkg", "Miss")), counts  # the case has each kind


def _image(detections: list[tuple[list[float], int, float]]) -> tuple[dict, list[dict]]:
    """One image with a car [0, 0, 10, 10] and a person [20, 0, 10, 10], and the given (box, class, score) detections."""
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}], "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 0, 10, 10], "iscrowd": 0},
    ]}
    return gt, [{"image_id": 1, "category_id": c, "bbox": b, "score": s} for b, c, s in detections]


@pytest.mark.parametrize("detection, kind", [
    (([0, 0, 10, 4], 1, 0.6), "Loc"),  # the car's class, IoU 0.4
    (([20, 0, 10, 10], 1, 0.6), "Cls"),  # on the person, called a car
    (([0, 0, 10, 10], 1, 0.6), "Dupe"),  # the car again, below the one that took it
    (([50, 50, 5, 5], 1, 0.6), "Bkg"),  # on nothing
    (([20, 0, 10, 4], 1, 0.6), "Both"),  # a car on part of the person
])
def test_each_error_type_on_a_hand_built_image(detection, kind):
    gt, dets = _image([([0, 0, 10, 10], 1, 0.9), ([20, 0, 10, 10], 2, 0.8), detection])
    ours = error_types(gt, dets)
    assert {name: count for name, count in ours.counts.items() if count} == {kind: 1}
    assert ours.counts == {name: tidecv_errors(gt, dets)[2][name] for name in ERROR_TYPES}


def test_a_missed_object_and_what_fixing_it_gains():
    gt, dets = _image([([0, 0, 10, 10], 1, 0.9)])  # the person is missed
    ours = error_types(gt, dets)
    assert ours.counts["Miss"] == 1 and ours.ap50 == pytest.approx(0.5)  # car 1.0, person 0.0
    assert ours.gained["Miss"] == pytest.approx(0.5) and ours.per_class["person"]["AP50"] == 0.0
    assert ours.per_class["person"]["Miss"] is None  # fixed, the class has nothing left to measure


def test_a_detection_on_a_crowd_region_of_its_class_is_no_data_point_but_still_an_error():
    gt, dets = _image([([0, 0, 10, 10], 1, 0.9), ([20, 0, 10, 10], 2, 0.8), ([60, 60, 4, 4], 1, 0.7)])
    gt["annotations"].append({"id": 3, "image_id": 1, "category_id": 1, "bbox": [55, 55, 20, 20], "iscrowd": 1})
    ours = error_types(gt, dets)
    assert ours.ap50 == 1.0 and ours.counts["Bkg"] == 1
    assert ours.counts == {name: tidecv_errors(gt, dets)[2][name] for name in ERROR_TYPES}
