"""The evaluation report: breakdown cells against independent COCO evaluations of hand-made subsets, the
"all" cell equal to the headline, the confusion matrix on hand-built cases, the comparison of a run with
itself, and the page's numbers equal to the JSON written beside it."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
from pycocotools.coco import COCO as PyCOCO
from pycocotools.cocoeval import COCOeval as PyCOCOeval

from support import PageNumbers, page_value, synthetic_case

from ssd.evaluation import evaluate_coco
from ssd.evaluation.breakdown import MIN_GROUND_TRUTH, SIZE_EDGES_PX, BandEvaluator, bands_from_edges
from ssd.evaluation.confusion import confusion_matrix
from ssd.evaluation.report import ReportSettings, build_report, compare
from ssd.evaluation.error_types import ERROR_TYPES
from ssd.evaluation.report_html import render_html

DISTANCE_BANDS = bands_from_edges((0, 50, 100, 200, 300), " m")


def with_distances(seed: int, one_band_per_image: bool = False) -> tuple[dict, list[dict]]:
    """:func:`support.synthetic_case` with a ``distance`` per object, whole metres 0..300, the band
    edges among them; ``one_band_per_image``: all the objects of an image in one band."""
    gt, dets = synthetic_case(seed)
    rng = np.random.default_rng(seed + 100)
    band_of = {image["id"]: DISTANCE_BANDS[rng.integers(len(DISTANCE_BANDS))] for image in gt["images"]}
    for ann in gt["annotations"]:
        if one_band_per_image:
            band = band_of[ann["image_id"]]
            ann["distance"] = float(rng.choice([band.low, math.floor(band.high), *rng.integers(band.low, math.floor(band.high) + 1, 4).tolist()]))
        else:
            ann["distance"] = float(rng.choice([0, 50, 100, 200, 300, *rng.integers(0, 301, 8).tolist()]))
    return gt, dets


def pycocotools_stats(gt: dict, detections: list[dict], area_range: tuple[float, float] | None = None) -> tuple[float, float]:
    """pycocotools' AP @[.5:.95] and AR @100 (area ``area_range`` if given, else all), on copies."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = PyCOCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = PyCOCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(detections)) if detections else PyCOCO(), "bbox")
        if area_range is not None:
            evaluator.params.areaRng, evaluator.params.areaRngLbl = [list(area_range)], ["band"]
        evaluator.evaluate()
        evaluator.accumulate()
    precision, recall = evaluator.eval["precision"][:, :, :, 0, -1], evaluator.eval["recall"][:, :, 0, -1]
    defined = precision > -1
    return (float(precision[defined].mean()), float(recall[recall > -1].mean())) if defined.any() else (-1.0, -1.0)


# -- breakdowns ------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1])
def test_the_all_cell_is_the_headline_exactly(seed):
    gt, dets = with_distances(seed)
    headline = evaluate_coco(gt, dets)
    evaluator = BandEvaluator(gt, dets)
    assert evaluator.attributes() == ["distance"]
    assert evaluator.headline().stats == headline.stats  # its IoUs are the breakdowns' too
    for breakdown in (evaluator.breakdown("size", bands_from_edges(SIZE_EDGES_PX, squared=True)), evaluator.breakdown("distance", DISTANCE_BANDS)):
        cell = breakdown.cells["all"]["all"]
        assert cell.ap == headline.map and cell.ar == headline.metrics["AR100"]
        assert {name: row.ap for name, row in breakdown.cells["all"].items() if name != "all"} == headline.per_class


def test_size_bands_equal_pycocotools_with_those_area_ranges():
    """An independent engine given the band as its area range: COCO's own rule for sizes."""
    gt, dets = synthetic_case(2)
    bands = bands_from_edges(SIZE_EDGES_PX, squared=True)
    breakdown = BandEvaluator(gt, dets).breakdown("size", bands)
    assert sum(breakdown.cells[band.label]["all"].ap > 0 for band in bands) >= 3
    for band in bands:
        ap, ar = pycocotools_stats(gt, dets, (band.low, band.high))
        cell = breakdown.cells[band.label]["all"]
        assert cell.ap == pytest.approx(ap, abs=1e-12) and cell.ar == pytest.approx(ar, abs=1e-12), band


def test_a_distance_band_equals_the_evaluation_of_its_objects_with_the_background_false_positives():
    """Each image's objects in one band; band B scored alone: its objects, the detections on them, and
    every detection that overlaps no object (it counts against every band); the objects of other
    bands and the detections on them gone. (Where one image mixes bands, COCO's rule of ignoring decides
    which object a detection matches, as for areas: the other tests hold that rule through the area range.)"""
    gt, dets = with_distances(3, one_band_per_image=True)
    evaluator = BandEvaluator(gt, dets)
    breakdown = evaluator.breakdown("distance", DISTANCE_BANDS)
    assigned = evaluator.assigned(np.array([a["distance"] for a in gt["annotations"]]))
    assert breakdown.background_detections == int(np.isnan(assigned).sum()) > 0
    crowd = {a["image_id"] for a in gt["annotations"] if a["iscrowd"]}
    # COCOeval keeps an image's 100 best detections of a class before it ignores any
    rank = {}
    for k in sorted(range(len(dets)), key=lambda k: -dets[k]["score"]):
        group = (dets[k]["image_id"], dets[k]["category_id"])
        rank[k] = rank.get(group, 0)
        rank[group] = rank[k] + 1
    capped = [rank[k] < 100 for k in range(len(dets))]
    assert not all(capped)  # the case's overfull images
    for band in DISTANCE_BANDS:
        inside = [a for a in gt["annotations"] if band.low <= a["distance"] <= band.high and not a["iscrowd"]]
        crowds = [a for a in gt["annotations"] if a["iscrowd"]]  # crowd regions stay: they absorb detections in every band
        kept = [d for d, value, top in zip(dets, assigned, capped) if top and (math.isnan(value) or band.low <= value <= band.high)]
        subset = {**gt, "annotations": inside + crowds}
        ap, ar = pycocotools_stats(subset, kept)
        cell = breakdown.cells[band.label]["all"]
        assert cell.ground_truth == len(inside)
        assert cell.ap == pytest.approx(ap, abs=1e-12) and cell.ar == pytest.approx(ar, abs=1e-12), band
    assert crowd and len({band_of_image for band_of_image in (a["distance"] // 1 for a in gt["annotations"])}) > 4


def test_bands_partition_their_values_and_the_counts_add_up():
    gt, dets = with_distances(4)
    breakdown = BandEvaluator(gt, dets).breakdown("distance", DISTANCE_BANDS)
    rows = [breakdown.cells[band.label]["all"] for band in DISTANCE_BANDS]
    assert sum(r.ground_truth for r in rows) == breakdown.cells["all"]["all"].ground_truth
    assert sum(r.detections for r in rows) + breakdown.background_detections == breakdown.cells["all"]["all"].detections == len(dets)
    # an object at an edge belongs to the band above it; a float below the edge to the band below
    first, second = DISTANCE_BANDS[0], DISTANCE_BANDS[1]
    assert second.low == 50.0 <= second.high and not first.low <= 50.0 <= first.high
    assert first.low <= float(np.nextafter(50.0, 0)) <= first.high
    assert DISTANCE_BANDS[-1].high == 300.0  # the last band keeps its top edge


def test_a_detection_takes_the_value_of_the_object_it_overlaps_most_of_its_own_class_first():
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}], "annotations": [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "area": 100, "iscrowd": 0, "distance": 10.0},
        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [2, 2, 10, 10], "area": 100, "iscrowd": 0, "distance": 90.0},
    ]}
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10], "score": 0.9},  # on the person's box, but a car: the car's
        {"image_id": 1, "category_id": 2, "bbox": [0, 0, 9, 9], "score": 0.8},  # a person on the car's box: the person's
        {"image_id": 1, "category_id": 1, "bbox": [10, 0, 2, 1], "score": 0.7},  # touches the car only at its edge: IoU 0
        {"image_id": 1, "category_id": 1, "bbox": [11, 11, 2, 2], "score": 0.6},  # overlaps the person only: the person's
    ]
    values = BandEvaluator(gt, dets).assigned(np.array([10.0, 90.0]))
    assert values[:2].tolist() == [10.0, 90.0] and math.isnan(values[2]) and values[3] == 90.0


def test_a_cell_resting_on_few_objects_says_so():
    gt, dets = with_distances(5)
    breakdown = BandEvaluator(gt, dets).breakdown("distance", DISTANCE_BANDS)
    for row in breakdown.cells.values():
        for cell in row.values():
            assert cell.few == (cell.ground_truth < MIN_GROUND_TRUTH)
    assert any(cell.few for row in breakdown.cells.values() for cell in row.values())
    assert not breakdown.cells["all"]["all"].few


def test_band_edges_must_increase():
    with pytest.raises(ValueError, match="increasing"):
        bands_from_edges((0, 50, 50))
    with pytest.raises(ValueError, match="increasing"):
        bands_from_edges((10,))


# -- the confusion matrix ------------------------------------------------------------------------
def _case(detections: list[tuple[list[float], int, float]], crowd: list[float] | None = None) -> tuple[dict, list[dict]]:
    """Two objects (a car [0, 0, 10, 10], a person [20, 0, 10, 10]), a crowd region if given, and detections (box, class, score)."""
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 0, 10, 10], "iscrowd": 0}]
    if crowd is not None:
        anns.append({"id": 3, "image_id": 1, "category_id": 1, "bbox": crowd, "iscrowd": 1})
    gt = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}], "annotations": anns}
    return gt, [{"image_id": 1, "category_id": c, "bbox": b, "score": s} for b, c, s in detections]


def test_each_kind_of_outcome_lands_in_its_cell():
    gt, dets = _case([
        ([0, 0, 10, 10], 1, 0.9),  # the car, right
        ([0, 0, 10, 10], 1, 0.8),  # the car again: a duplicate, nothing left to match
        ([20, 0, 10, 10], 1, 0.7),  # the person, called a car
        ([50, 50, 5, 5], 2, 0.6),  # nothing there
        ([60, 60, 5, 5], 2, 0.4),  # below the score
    ])
    matrix = confusion_matrix(gt, dets, iou_threshold=0.5, score_threshold=0.5)
    assert matrix.labels == ["car", "person", "background"]
    assert matrix.counts.tolist() == [[1, 0, 0], [1, 0, 0], [1, 1, 0]]
    (frame,) = matrix.frames
    assert (frame.missed, frame.false_positives, frame.confused, frame.total) == (0, 2, 1, 3)


@pytest.mark.parametrize("height, matched", [(5.0, True), (5.0 - 2**-20, False)])
def test_the_iou_threshold_matches_at_its_value_not_below(height, matched):
    """IoU of [0, 0, 10, h] with the car [0, 0, 10, 10] is h / 10: 0.5 at h = 5 (exact), just below under it."""
    gt, dets = _case([([0, 0, 10, height], 1, 0.9)])
    counts = confusion_matrix(gt, dets, iou_threshold=0.5, score_threshold=0.5).counts
    assert counts[0, 0] == int(matched) and counts[2, 0] == int(not matched) and counts[0, 2] == int(not matched)


@pytest.mark.parametrize("score, counted", [(0.5, True), (float(np.nextafter(np.float32(0.5), np.float32(0))), False)])
def test_the_score_threshold_counts_at_its_value_not_below(score, counted):
    gt, dets = _case([([0, 0, 10, 10], 1, score)])
    counts = confusion_matrix(gt, dets, score_threshold=0.5).counts
    assert counts[0, 0] == int(counted) and counts[0, 2] == int(not counted)


def test_a_detection_on_a_crowd_region_counts_nowhere():
    gt, dets = _case([([42, 2, 4, 4], 1, 0.9), ([70, 70, 4, 4], 1, 0.9)], crowd=[40, 0, 20, 20])
    counts = confusion_matrix(gt, dets).counts
    assert counts[2].tolist() == [1, 0, 0]  # only the one off the crowd region is a false positive
    assert counts[:2, 2].tolist() == [1, 1]  # both objects missed; the crowd region is not


# -- the report and its page ---------------------------------------------------------------------
def _shown(value) -> str:
    if isinstance(value, int):
        return str(value)
    return "n/a" if value is None or value < 0 else f"{value:.4f}"


def test_every_number_on_the_page_is_the_json_s():
    gt, dets = with_distances(6)
    training = [{"epoch": str(e), "loss": str(9.0 - e), "mAP": str(0.1 * e), "AP50": str(0.2 * e), "lr": "0.01", "note": "x"} for e in range(3)]
    report = build_report("case 6", gt, dets, ReportSettings(score_threshold=0.3), training=training)
    numbers = json.loads(json.dumps(report.to_dict()))
    assert numbers["training"][2] == {"epoch": 2.0, "loss": 7.0, "mAP": 0.2, "AP50": 0.4, "lr": 0.01}  # numeric columns only
    numbers["comparison"] = compare(numbers, numbers)
    text = render_html(numbers)
    assert text.count("<polyline") == 3 * len(numbers["curves"]) + 3  # PR, mean PR and F1 per class; mAP, AP50 and loss
    page = PageNumbers()
    page.feed(text)
    assert page.external == []
    assert len(page.numbers) > 100
    for key, text in page.numbers.items():
        if key.startswith("confusion."):
            _, true, predicted = key.split(".")
            labels = numbers["confusion"]["labels"]
            assert text == str(numbers["confusion"]["counts"][labels.index(true)][labels.index(predicted)])
        elif key.startswith("comparison."):
            value = page_value(numbers, key)
            assert text == ("n/a" if value is None else f"{value:+.4f}"), key
        elif key.startswith("error_types.") and not isinstance(page_value(numbers, key), int):
            value = page_value(numbers, key)
            assert text == ("n/a" if value is None else f"{value:.4f}"), key
        elif ".cells." in key and page_value(numbers, key.rsplit(".", 1)[0])["few"]:
            assert text == ("n/a" if page_value(numbers, key) < 0 else f"{page_value(numbers, key):.2f}"), key
        else:
            assert text == _shown(page_value(numbers, key)), key
    assert page.numbers["headline.mAP"] == f"{evaluate_coco(gt, dets).map:.4f}"
    assert {key.split(".")[2] for key in page.numbers if key.startswith("error_types.gained.")} == {*ERROR_TYPES, "FalsePos", "FalseNeg"}


def test_a_run_compared_with_itself_differs_nowhere():
    gt, dets = with_distances(7)
    numbers = build_report("a", gt, dets).to_dict()
    comparison = compare(numbers, numbers)
    assert all(v in (0.0, None) for v in comparison["headline"].values())
    assert all(v in (0.0, None) for cells in comparison["breakdowns"].values() for row in cells.values() for v in row.values())
    assert comparison["frames"] == [] and set(comparison["error_types"].values()) == {0.0}
    other = build_report("b", gt, dets[: len(dets) // 2]).to_dict()
    changed = compare(numbers, other)
    assert changed["headline"]["mAP"] == other["headline"]["mAP"] - numbers["headline"]["mAP"] != 0
    assert changed["frames"] and all(f["difference"] == f["other"] - f["base"] != 0 for f in changed["frames"])
    first = gt["images"][0]["id"]
    fewer = {**gt, "images": gt["images"][1:], "annotations": [a for a in gt["annotations"] if a["image_id"] != first]}
    with pytest.raises(ValueError, match="different ground truth"):
        compare(numbers, build_report("c", fewer, [d for d in dets if d["image_id"] != first]).to_dict())


@pytest.mark.parametrize("case", ["no detections", "no objects", "one image"])
def test_a_report_of_an_empty_side_is_made_and_says_so(case):
    gt, dets = with_distances(8)
    if case == "no detections":
        dets = []
    elif case == "no objects":
        gt = {**gt, "annotations": []}
    else:
        first = gt["images"][0]["id"]
        gt = {**gt, "images": gt["images"][:1], "annotations": [a for a in gt["annotations"] if a["image_id"] == first]}
        dets = [d for d in dets if d["image_id"] == first]
    numbers = build_report(case, gt, dets).to_dict()
    page = PageNumbers()
    page.feed(render_html(numbers))
    assert page.numbers["headline.mAP"] == _shown(numbers["headline"]["mAP"])
    confusion = np.array(numbers["confusion"]["counts"])
    assert confusion.sum() == sum(1 for d in dets if d["score"] >= 0.5) + sum(f["missed"] for f in numbers["frame_errors"])
