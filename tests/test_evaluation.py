"""ssd.evaluation: equal to pycocotools' COCOeval and torchmetrics' MeanAveragePrecision on generated cases."""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO as PyCOCO
from pycocotools.cocoeval import COCOeval as PyCOCOeval
from torch.utils.data import DistributedSampler
from torchmetrics.detection import MeanAveragePrecision

from support import synthetic_case

from ssd.evaluation import (
    EvalResult,
    EvaluationError,
    detections_to_coco,
    evaluate_coco,
    merge_detections,
    plot_precision_recall,
    stat_labels,
)
from ssd.evaluation.coco_eval import _clean_detection, _clean_plain_detections

TORCHMETRICS_KEYS = (
    "map", "map_50", "map_75", "map_small", "map_medium", "map_large",
    "mar_1", "mar_10", "mar_100", "mar_small", "mar_medium", "mar_large",
)  # in COCOeval's stats order


def pycocotools_eval(gt: dict, detections: list[dict]) -> PyCOCOeval:
    """pycocotools' COCOeval, run to the end on copies of the inputs."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = PyCOCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        evaluator = PyCOCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(detections)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def torchmetrics_map(gt: dict, detections: list[dict], backend: str = "faster_coco_eval", **options) -> dict[str, torch.Tensor]:
    """torchmetrics' MeanAveragePrecision as MLPerf configures it (plus ``options``), fed one image at a
    time (xyxy pixels). MLPerf runs it on faster-coco-eval, the engine ours uses too; on pycocotools
    it is an independent implementation with torchmetrics' float32 thresholds."""
    def xyxy(entries: list[dict]) -> torch.Tensor:
        boxes = torch.tensor([e["bbox"] for e in entries], dtype=torch.float32).reshape(-1, 4)
        return torch.cat([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], dim=1)

    metric = MeanAveragePrecision(iou_type="bbox", class_metrics=True, backend=backend, **options)
    metric.warn_on_many_detections = False  # the cases exceed 100 detections on purpose
    for image in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == image["id"]]
        dets = [d for d in detections if d["image_id"] == image["id"]]
        target = {
            "boxes": xyxy(anns),
            "labels": torch.tensor([a["category_id"] for a in anns], dtype=torch.int64),
            "iscrowd": torch.tensor([a["iscrowd"] for a in anns], dtype=torch.int64),
        }
        pred = {
            "boxes": xyxy(dets),
            "scores": torch.tensor([d["score"] for d in dets], dtype=torch.float32),
            "labels": torch.tensor([d["category_id"] for d in dets], dtype=torch.int64),
        }
        metric.update([pred], [target])
    return metric.compute()


def per_class_of(evaluator: PyCOCOeval, gt: dict) -> dict[str, float]:
    """Class name -> AP @[.5:.95] from pycocotools' precision array, -1 without ground truth."""
    precision = evaluator.eval["precision"]
    names = {c["id"]: c["name"] for c in gt["categories"]}
    result = {}
    for k, cat_id in enumerate(evaluator.params.catIds):
        values = precision[:, :, k, 0, -1]
        result[names[cat_id]] = float(values[values > -1].mean()) if (values > -1).any() else -1.0
    return result


@pytest.fixture(scope="module")
def case() -> tuple[dict, list[dict]]:
    return synthetic_case(0)


def test_synthetic_case_has_every_edge_case(case):
    gt, dets = case
    anns = gt["annotations"]
    gt_images = {a["image_id"] for a in anns}
    areas = np.array([a["area"] for a in anns])
    per_image_class: dict[tuple[int, int], int] = {}
    for d in dets:
        key = (d["image_id"], d["category_id"])
        per_image_class[key] = per_image_class.get(key, 0) + 1
    assert any(a["iscrowd"] for a in anns) and not all(a["iscrowd"] for a in anns)
    assert len(gt_images) < len(gt["images"])  # empty images
    assert {d["image_id"] for d in dets} - gt_images  # detections on images without ground truth
    assert max(per_image_class.values()) > 100  # over maxDets for one image and class
    assert (areas < 32**2).any() and ((areas >= 32**2) & (areas < 96**2)).any() and (areas >= 96**2).any()
    assert 6 not in {a["category_id"] for a in anns} and 6 in {d["category_id"] for d in dets}
    assert 5 in {a["category_id"] for a in anns} and 5 not in {d["category_id"] for d in dets}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_pycocotools(seed):
    gt, dets = synthetic_case(seed)
    result = evaluate_coco(gt, dets)
    reference = pycocotools_eval(gt, dets)
    assert len(result.stats) == 12
    np.testing.assert_allclose(result.stats, reference.stats, rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.precision, reference.eval["precision"], rtol=0, atol=1e-9)
    assert result.per_class == pytest.approx(per_class_of(reference, gt), abs=1e-9)
    assert result.per_class["c6"] == -1.0 and result.per_class["c5"] == 0.0
    assert 0.05 < result.map < 0.95  # a case with something to measure


@pytest.mark.parametrize(("seed", "backend"), [(0, "faster_coco_eval"), (3, "faster_coco_eval"), (3, "pycocotools")])
def test_equals_torchmetrics_as_mlperf_scores(seed, backend):
    gt, dets = synthetic_case(seed)
    result = evaluate_coco(gt, dets, thresholds="torchmetrics")
    metrics = torchmetrics_map(gt, dets, backend)
    for key, value in zip(TORCHMETRICS_KEYS, result.stats):
        assert metrics[key].item() == pytest.approx(value, abs=1e-6), key
    # torchmetrics lists the classes seen in ground truth or detections; the no-ground-truth class reads -1
    names = {c["id"]: c["name"] for c in gt["categories"]}
    tm_per_class = {names[c]: v for c, v in zip(metrics["classes"].tolist(), metrics["map_per_class"].tolist())}
    assert tm_per_class == pytest.approx({name: result.per_class[name] for name in tm_per_class}, abs=1e-6)
    assert tm_per_class["c6"] == -1.0


def test_torchmetrics_differs_from_cocoeval_only_by_its_float32_thresholds(case):
    gt, dets = case
    coco = evaluate_coco(gt, dets)
    float32 = evaluate_coco(gt, dets, thresholds="torchmetrics")
    assert max(abs(a - b) for a, b in zip(coco.stats, float32.stats)) > 1e-5  # this case hits the difference
    exact = torchmetrics_map(
        gt, dets, iou_thresholds=np.linspace(0.5, 0.95, 10).tolist(), rec_thresholds=np.linspace(0, 1, 101).tolist()
    )
    for key, value in zip(TORCHMETRICS_KEYS, coco.stats):
        assert exact[key].item() == pytest.approx(value, abs=1e-6), key
    with pytest.raises(ValueError, match="thresholds"):
        evaluate_coco(gt, dets, thresholds="pycocotools")


def test_perfect_detections_score_one(case):
    gt, _ = case
    dets = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in gt["annotations"] if not a["iscrowd"]
    ]
    result = evaluate_coco(gt, dets)
    assert result.stats[:6] == pytest.approx([1.0] * 6)
    assert result.stats[8:] == pytest.approx([1.0] * 4)
    assert result.per_class == {"c1": 1.0, "c2": 1.0, "c3": 1.0, "c4": 1.0, "c5": 1.0, "c6": -1.0}


def test_empty_detections_score_zero(case):
    gt, _ = case
    result = evaluate_coco(gt, [])
    assert result.stats == [0.0] * 12
    assert result.per_class == {"c1": 0.0, "c2": 0.0, "c3": 0.0, "c4": 0.0, "c5": 0.0, "c6": -1.0}


def test_area_range_without_ground_truth_is_minus_one():
    gt = {
        "images": [{"id": 1}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50]}],  # medium, no area
        "categories": [{"id": 1, "name": "car"}],
    }
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.5}]
    result = evaluate_coco(gt, dets)
    # AP, AP50, AP75, small, medium, large, AR1, AR10, AR100, small, medium, large
    assert result.stats == [1.0, 1.0, 1.0, -1.0, 1.0, -1.0, 1.0, 1.0, 1.0, -1.0, 1.0, -1.0]


def test_annotation_id_zero_is_not_mistaken_for_unmatched():
    gt = {
        "images": [{"id": 1}],
        "annotations": [{"id": 0, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "area": 2500, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "car"}],
    }
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50], "score": 0.5}]
    assert evaluate_coco(gt, dets).map == 1.0
    assert pycocotools_eval(gt, dets).stats[0] == 0.0  # pycocotools counts the match as a miss


def test_reads_json_files_and_leaves_inputs_alone(case, tmp_path):
    gt, dets = case
    gt_before, dets_before = copy.deepcopy(gt), copy.deepcopy(dets)
    from_objects = evaluate_coco(gt, dets, class_names={1: "car"})
    assert (gt, dets) == (gt_before, dets_before)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    from_files = evaluate_coco(str(tmp_path / "gt.json"), tmp_path / "dets.json", class_names={1: "car"})
    assert from_files == from_objects
    assert list(from_files.per_class) == ["car", "c2", "c3", "c4", "c5", "c6"]
    assert json.loads(json.dumps(from_files.to_dict())) == {"stats": from_files.stats, "per_class": from_files.per_class}


def test_max_dets_are_honoured(case):
    gt, dets = case
    result = evaluate_coco(gt, dets, max_dets=(1, 5, 20))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = PyCOCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        reference = PyCOCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(dets)), "bbox")
        reference.params.maxDets = [1, 5, 20]
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    # pycocotools' summarize() reads AP @[.5:.95] at maxDets=100 whatever the parameters (-1 here)
    np.testing.assert_allclose(result.stats[1:], reference.stats[1:], rtol=0, atol=1e-9)
    np.testing.assert_allclose(result.precision, reference.eval["precision"], rtol=0, atol=1e-9)
    assert "maxDets= 20" in stat_labels(result.max_dets)[0]
    with pytest.raises(ValueError, match="max_dets"):
        evaluate_coco(gt, dets, max_dets=(100, 10))


def test_table_labels_like_cocoeval(case):
    gt, dets = case
    lines = evaluate_coco(gt, dets).table().splitlines()
    assert lines[0].startswith(" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = ")
    assert lines[11].startswith(" Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = ")
    assert lines[-1].startswith("c6") and "no ground truth" in lines[-1]


GOOD_GT = {"images": [{"id": 1}], "annotations": [], "categories": [{"id": 1, "name": "car"}]}
GOOD_DET = {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5}


@pytest.mark.parametrize(
    ("detections", "message"),
    [
        ({"annotations": []}, "expected a JSON list"),
        ([{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}], "detection 0: needs integer"),
        ([GOOD_DET, {**GOOD_DET, "bbox": [0, 0, 10]}], "detection 1: bbox must be"),
        ([{**GOOD_DET, "bbox": [0, 0, -1, 10]}], "bbox must be"),
        ([{**GOOD_DET, "bbox": [0, 0, math.nan, 10]}], "bbox must be"),
        ([{**GOOD_DET, "bbox": "0 0 10 10"}], "bbox must be"),
        ([{**GOOD_DET, "score": "high"}], "numeric 'score'"),
        ([{**GOOD_DET, "image_id": 2}, {**GOOD_DET, "image_id": 3}], "2 image ids not in the ground truth"),
        ([{**GOOD_DET, "category_id": 9}], "1 category ids not in the ground truth"),
    ],
)
def test_bad_detections_are_named(tmp_path, detections, message):
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(detections))
    with pytest.raises(EvaluationError, match=message) as info:
        evaluate_coco(GOOD_GT, path)
    assert str(path) in str(info.value)


HOSTILE_DETECTION_FIELDS = [
    {"bbox": [0, 0, 10, "10"]}, {"bbox": (0, 0, 10, 10)}, {"bbox": [0, 0, 10, 1 + 2j]}, {"bbox": [0, 0, 10, 10**400]},
    {"bbox": [1e308, 1e308, 0, 0]}, {"bbox": [0, 0, 10, None]}, {"bbox": [[0], 0, 10, 10]}, {"bbox": [0, 0, 10, True]},
    {"bbox": [0, 0, 10, -0.0]}, {"bbox": [0, 0, 10, math.inf]}, {"score": 10**400}, {"score": "0.5"}, {"score": math.nan},
    {"score": True}, {"image_id": True}, {"image_id": 1.0}, {"category_id": "1"},
]


@pytest.mark.parametrize("fields", HOSTILE_DETECTION_FIELDS, ids=repr)
def test_detections_checked_in_bulk_as_one_by_one(fields):
    """The bulk check (plain JSON detections) accepts nothing the one-by-one check rejects, and makes the same copies."""
    detections = [GOOD_DET, {**GOOD_DET, **fields}]
    try:
        one_by_one = [_clean_detection(det) for det in detections]
    except ValueError:
        one_by_one = None
    bulk = _clean_plain_detections(detections)
    assert bulk is None or bulk == one_by_one
    if one_by_one is None:
        with pytest.raises(EvaluationError, match="detection 1: "):
            evaluate_coco(GOOD_GT, detections)


def test_plain_detections_are_checked_in_bulk():
    detections = [GOOD_DET, {**GOOD_DET, "bbox": [0.5, 1, 2, 3.25], "score": 1}]
    assert _clean_plain_detections(detections) == [_clean_detection(det) for det in detections]
    assert _clean_plain_detections([]) == []


@pytest.mark.parametrize(
    ("ground_truth", "message"),
    [
        ([], "expected a COCO object"),
        ({"images": [{"id": 1}], "categories": [{"id": 1}]}, "'annotations' must be a list"),
        ({**GOOD_GT, "images": [{"file_name": "a.png"}]}, "integer 'id'"),
        ({**GOOD_GT, "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 1]}]}, "annotation 0: bbox"),
        ({**GOOD_GT, "annotations": [{"image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1]}]}, "not in 'images'"),
    ],
)
def test_bad_ground_truth_is_named(tmp_path, ground_truth, message):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(ground_truth))
    with pytest.raises(EvaluationError, match=message) as info:
        evaluate_coco(path, [GOOD_DET])
    assert str(path) in str(info.value)


def test_invalid_json_and_missing_file(tmp_path):
    path = tmp_path / "preds.json"
    path.write_text("[{not json")
    with pytest.raises(EvaluationError, match="preds.json: not valid JSON"):
        evaluate_coco(GOOD_GT, path)
    with pytest.raises(FileNotFoundError, match="missing.json"):
        evaluate_coco(GOOD_GT, tmp_path / "missing.json")


def test_detections_to_coco_converts_and_maps_labels():
    outputs = [
        {
            "boxes": torch.tensor([[10.0, 20.0, 50.0, 80.0], [0.5, 1.5, 2.0, 4.0]]),
            "scores": torch.tensor([0.9, 0.25]),
            "labels": torch.tensor([1, 3]),
        },
        {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    expected = [
        {"image_id": 7, "category_id": 10, "bbox": [10.0, 20.0, 40.0, 60.0], "score": pytest.approx(0.9)},
        {"image_id": 7, "category_id": 30, "bbox": [0.5, 1.5, 1.5, 2.5], "score": 0.25},
    ]
    assert detections_to_coco(outputs, [7, 8], {1: 10, 3: 30}) == expected
    assert detections_to_coco(outputs, [7, 8], lambda label: 10 * label) == expected
    with pytest.raises(EvaluationError, match="label 3 has no category"):
        detections_to_coco(outputs, [7, 8], {1: 10})
    with pytest.raises(ValueError, match="2 outputs for 1 image ids"):
        detections_to_coco(outputs, [7], {1: 10, 3: 30})


def test_merge_detections_counts_padded_images_once(case):
    gt, dets = case
    dataset = gt["images"][:5]  # 5 images on 3 ranks: the sampler pads to 6, repeating the first image
    by_image = {image["id"]: [d for d in dets if d["image_id"] == image["id"]] for image in dataset}
    per_rank = [
        [d for index in DistributedSampler(dataset, num_replicas=3, rank=rank, shuffle=False) for d in by_image[dataset[index]["id"]]]
        for rank in range(3)
    ]
    assert sum(map(len, per_rank)) > sum(map(len, by_image.values()))  # the padding duplicated an image
    merged = merge_detections(per_rank)
    assert sorted(merged, key=repr) == sorted((d for ds in by_image.values() for d in ds), key=repr)
    subset = {**gt, "images": dataset, "annotations": [a for a in gt["annotations"] if a["image_id"] in by_image]}
    assert evaluate_coco(subset, merged) == evaluate_coco(subset, [d for ds in by_image.values() for d in ds])


def test_plots_are_written_without_a_second_evaluation(case, tmp_path):
    gt, dets = case
    result = evaluate_coco(gt, dets)
    paths = plot_precision_recall(result, tmp_path / "plots")
    # five classes with ground truth (c6 has none) and the bar chart
    assert [p.name for p in paths] == [f"pr_{k:02d}_c{k + 1}.png" for k in range(5)] + ["ap_per_class.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths)


def test_each_statistic_is_named_and_labelled_in_cocoevals_order():
    stats = [k / 100 for k in range(12)]  # all different: a shifted name would show
    result = EvalResult(stats, {"car": 0.5, "bus": -1.0}, np.zeros((10, 101, 2, 4, 3)), max_dets=(1, 10, 500))
    assert result.map == 0.0 and list(result.metrics.items()) == list(zip(
        ["mAP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR500", "AR_small", "AR_medium", "AR_large"], stats))
    lines = result.table().splitlines()
    assert lines[1] == " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=500 ] = 0.0100"
    assert lines[6] == " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.0600"
    assert lines[9] == " Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=500 ] = 0.0900"
    assert lines[-2:] == ["car    0.5000", "bus    n/a (no ground truth)"]


def test_the_collector_is_paused_only_inside_and_left_as_it_was():
    import gc

    from ssd.evaluation.coco_eval import collection_paused

    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with collection_paused():
            assert not gc.isenabled()
            raise RuntimeError("inside")
    assert gc.isenabled()
    gc.disable()
    try:
        with collection_paused():
            pass
        assert not gc.isenabled()  # the caller's choice stays
    finally:
        gc.enable()
