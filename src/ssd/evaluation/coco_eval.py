"""COCO bounding-box evaluation on faster-coco-eval: COCOeval's 12 statistics and per-class AP.

The numbers equal pycocotools' ``COCOeval`` (crowd regions, maxDets 1/10/100, small/medium/large
areas) and, with ``thresholds="torchmetrics"``, torchmetrics' ``MeanAveragePrecision(iou_type="bbox",
class_metrics=True, backend="faster_coco_eval")``, the scorer of MLPerf Automotive. The two differ
in one respect: torchmetrics builds its default IoU and recall thresholds with ``torch.linspace`` in
float32 (0.550000011920929 instead of 0.55, 0.2800000011920929 instead of 0.28), so where a recall or
an IoU lands exactly on a threshold it drops a step that COCOeval keeps. ``thresholds="coco"``
(default) uses COCOeval's thresholds, ``"torchmetrics"`` the float32 ones.

Conventions, as in COCOeval and torchmetrics:

- A statistic with no ground truth to measure (e.g. ``AP small`` when no object is small) is -1.
- A class without ground truth has AP -1 (torchmetrics' ``map_per_class`` reports -1 for such a
  class when it has detections, and leaves it out when it has none; here every category of the
  ground truth is listed). -1 rather than NaN keeps ``to_dict()`` valid JSON.
- Empty detections score 0 wherever there is ground truth.

(The scoring and the checks of its two inputs, which must reject exactly what would make a number
wrong, are kept in one module so that they are read together.)
"""
from __future__ import annotations

import contextlib
import copy
import gc
import json
import logging
import math
import operator
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from faster_coco_eval import COCO, COCOeval_faster

from ssd.errors import SSDError

logger = logging.getLogger(__name__)

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCOeval's params.iouThrs
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)  # COCOeval's params.recThrs
AREA_RANGES = ("all", "small", "medium", "large")  # COCOeval's params.areaRngLbl
Thresholds = Literal["coco", "torchmetrics"]
MISSING = -1.0  # COCOeval's value for "nothing to measure"
_BAD_BOX = "bbox must be 4 finite numbers [x, y, w, h] with w, h >= 0"


class EvaluationError(SSDError):
    """Ground truth or detections that cannot be evaluated; the message names the source and the problem."""


@dataclass(frozen=True)
class EvalResult:
    """The outcome of one COCO evaluation.

    ``stats`` are COCOeval's 12 numbers in its order (AP @[.5:.95], AP50, AP75, AP small/medium/large,
    AR @maxDets 1/10/100, AR small/medium/large); ``per_class`` maps class name to AP @[.5:.95]
    (area all, largest maxDets), in category-id order, -1 for a class without ground truth.
    ``precision [T, R, K, A, M]`` is COCOeval's accumulated precision (T = 10 IoU thresholds,
    R = 101 recall thresholds, K = classes in ``per_class`` order, A = areas all/small/medium/large,
    M = ``max_dets``), -1 where undefined; it lets plots reuse the evaluation.
    """

    stats: list[float]
    per_class: dict[str, float]
    precision: np.ndarray = field(repr=False, compare=False)
    max_dets: tuple[int, ...] = (1, 10, 100)

    @property
    def map(self) -> float:
        """COCO mAP @[.5:.95] (``stats[0]``), the MLPerf accuracy metric."""
        return self.stats[0]

    @property
    def metrics(self) -> dict[str, float]:
        """The 12 statistics by short name (:func:`stat_names`): ``mAP``, ``AP50``, ... ``AR_large``."""
        return dict(zip(stat_names(self.max_dets), self.stats))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready ``{"stats": [12 floats], "per_class": {name: AP}}``."""
        return {"stats": list(self.stats), "per_class": dict(self.per_class)}

    def table(self) -> str:
        """The 12 statistics labelled as COCOeval's summary prints them, then per-class AP."""
        lines = [f"{label} = {value:.4f}" for label, value in zip(stat_labels(self.max_dets), self.stats)]
        if self.per_class:
            width = max(len("class"), *(len(name) for name in self.per_class))
            lines += ["", f"{'class':<{width}}  AP @[.5:.95]"]
            lines += [
                f"{name:<{width}}  {ap:.4f}" if ap >= 0 else f"{name:<{width}}  n/a (no ground truth)"
                for name, ap in self.per_class.items()
            ]
        return "\n".join(lines)


def stat_names(max_dets: Sequence[int] = (1, 10, 100)) -> tuple[str, ...]:
    """Short names of the 12 statistics in COCOeval's order (CSV columns, TensorBoard tags)."""
    areas = tuple(f"{{}}_{area}" for area in AREA_RANGES[1:])
    return ("mAP", "AP50", "AP75", *(a.format("AP") for a in areas), *(f"AR{n}" for n in max_dets), *(a.format("AR") for a in areas))


def stat_labels(max_dets: Sequence[int] = (1, 10, 100)) -> list[str]:
    """COCOeval.summarize()'s label for each of the 12 statistics, e.g.
    ``" Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"``."""
    most = max_dets[-1]
    rows = [(True, "0.50:0.95", "all", most), (True, "0.50", "all", most), (True, "0.75", "all", most)]
    rows += [(True, "0.50:0.95", area, most) for area in AREA_RANGES[1:]]
    rows += [(False, "0.50:0.95", "all", n) for n in max_dets]
    rows += [(False, "0.50:0.95", area, most) for area in AREA_RANGES[1:]]
    return [
        f" {'Average Precision' if ap else 'Average Recall':<18} {'(AP)' if ap else '(AR)'} "
        f"@[ IoU={iou:<9} | area={area:>6s} | maxDets={n:>3d} ]"
        for ap, iou, area, n in rows
    ]


def evaluate_coco(
    ground_truth: Mapping[str, Any] | str | Path,
    detections: Sequence[Mapping[str, Any]] | str | Path,
    *,
    max_dets: Sequence[int] = (1, 10, 100),
    class_names: Mapping[int, str] | None = None,
    thresholds: Thresholds = "coco",
) -> EvalResult:
    """Score COCO-results detections against COCO-format ground truth (bounding boxes).

    ``ground_truth`` is a COCO dict or JSON path (``images``, ``annotations`` with ``bbox`` [x, y, w, h]
    pixels, ``iscrowd`` and ``area`` optional (default 0 and w * h), ``categories``); ``detections``
    a list or JSON path of ``{"image_id", "category_id", "bbox": [x, y, w, h] pixels, "score"}``.
    ``class_names`` (category id -> name) overrides the ground truth's category names. ``thresholds``
    picks COCOeval's IoU and recall thresholds or torchmetrics' float32 ones (see the module docstring).
    Neither input is modified. Ground-truth annotation ids are renumbered from 1, as torchmetrics does,
    because COCOeval mistakes a matched ground truth of id 0 for an unmatched one.

    Raises :class:`EvaluationError` for malformed input, and for detections whose image or category
    is not in the ground truth (such detections point at an id-mapping bug rather than a bad model).
    """
    with collection_paused():
        coco_gt, coco_dt = load_coco(ground_truth, detections)
        evaluator = new_evaluator(coco_gt, coco_dt, max_dets, thresholds)
        evaluator.evaluate()
        return summarized(evaluator, class_names)


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused inside, as it was after: evaluation makes millions of small
    dicts and lists in no cycle, and every full collection walks them all (a third of a large load)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def load_coco(ground_truth: Mapping[str, Any] | str | Path, detections: Sequence[Mapping[str, Any]] | str | Path,
              detections_name: str = "detections") -> tuple[COCO, COCO]:
    """The validated ground truth and detections as faster-coco-eval's indexes (see :func:`evaluate_coco`);
    ``detections_name`` names in-memory detections in error messages (their file, say)."""
    coco_gt = COCO(_load_ground_truth(ground_truth), print_function=logger.debug)
    return coco_gt, _results_index(coco_gt, _load_detections(detections, coco_gt, detections_name))


def _results_index(coco_gt: COCO, detections: list[dict[str, Any]]) -> COCO:
    """Checked detections indexed as ``coco_gt.loadRes`` indexes box results (numbered from 1 in their order,
    area w x h, not crowd; :func:`_clean_detection` gives the area and the crowd flag), without the
    polygon loadRes also makes of every box, which a box evaluation never reads (a third of the load)."""
    for number, det in enumerate(detections, start=1):
        det["id"] = number
    dataset = {"images": list(coco_gt.dataset["images"]), "categories": copy.deepcopy(coco_gt.dataset["categories"]), "annotations": detections}
    return COCO(dataset, print_function=logger.debug)


def new_evaluator(coco_gt: COCO, coco_dt: COCO, max_dets: Sequence[int] = (1, 10, 100), thresholds: Thresholds = "coco") -> COCOeval_faster:
    """A bbox COCOeval of COCOeval's areas, ``max_dets`` (three increasing numbers) and ``thresholds``."""
    iou_thresholds, recall_thresholds = _thresholds(thresholds)
    max_dets = tuple(int(n) for n in max_dets)
    if len(max_dets) != 3 or sorted(max_dets) != list(max_dets):
        raise ValueError(f"max_dets must be three increasing numbers (COCOeval's layout), got {max_dets}")
    evaluator = COCOeval_faster(coco_gt, coco_dt, iouType="bbox", print_function=logger.debug)
    evaluator.params.maxDets = list(max_dets)
    evaluator.params.iouThrs, evaluator.params.recThrs = iou_thresholds, recall_thresholds
    return evaluator


def summarized(evaluator: COCOeval_faster, class_names: Mapping[int, str] | None = None) -> EvalResult:
    """The :class:`EvalResult` of an evaluator of :func:`new_evaluator` once it has evaluated."""
    evaluator.accumulate()
    evaluator.summarize()
    precision = np.asarray(evaluator.eval["precision"])
    names = [_class_name(evaluator.cocoGt.cats[cat_id], class_names) for cat_id in evaluator.params.catIds]
    if len(set(names)) != len(names):
        raise EvaluationError(f"class names are not unique: {names}")
    per_class = {name: mean_defined(precision[:, :, k, 0, -1]) for k, name in enumerate(names)}
    return EvalResult([float(s) for s in evaluator.stats], per_class, precision, tuple(evaluator.params.maxDets))


def score_detections(
    ground_truth: Mapping[str, Any], detections: Sequence[Mapping[str, Any]], image_ids: Sequence[int], *, thresholds: Thresholds = "coco"
) -> EvalResult:
    """COCO mAP of COCO-results ``detections`` over the images ``image_ids`` only.

    The ground truth is restricted to those images, so a run over part of a dataset (LoadGen's
    ``--count``, images a loader skipped as unreadable) is scored on what was run.
    """
    return evaluate_coco(restricted(ground_truth, image_ids), detections, thresholds=thresholds)


def restricted(ground_truth: Mapping[str, Any], image_ids: Iterable[int]) -> dict[str, Any]:
    """COCO ground truth of the images ``image_ids`` only (their annotations with them; categories kept)."""
    seen = set(image_ids)
    return {
        **ground_truth,
        "images": [image for image in ground_truth["images"] if image["id"] in seen],
        "annotations": [ann for ann in ground_truth["annotations"] if ann["image_id"] in seen],
    }


def _thresholds(kind: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """IoU thresholds [10] and recall thresholds [101]: COCOeval's, or torchmetrics' defaults."""
    if kind == "coco":
        return IOU_THRESHOLDS, RECALL_THRESHOLDS
    if kind == "torchmetrics":  # MeanAveragePrecision's defaults: float32 torch.linspace
        return np.array(torch.linspace(0.5, 0.95, 10).tolist()), np.array(torch.linspace(0.0, 1.0, 101).tolist())
    raise ValueError(f"thresholds must be 'coco' or 'torchmetrics', got {kind!r}")


def mean_defined(values: np.ndarray) -> float:
    """Mean of the entries > -1 (COCOeval's ``_summarize``), -1 when there are none."""
    defined = values[values > -1]
    return float(np.mean(defined)) if defined.size else MISSING


def _class_name(category: Mapping[str, Any], class_names: Mapping[int, str] | None) -> str:
    if class_names is not None and category["id"] in class_names:
        return class_names[category["id"]]
    return str(category.get("name", category["id"]))


def _read(source: Any, what: str) -> tuple[Any, str]:
    """The JSON content of a path, or the object itself; plus a name for error messages."""
    if not isinstance(source, (str, Path)):
        return source, what
    path = Path(source)
    with path.open("rb") as file:  # a missing file raises FileNotFoundError, which names it
        try:
            with collection_paused():
                return json.load(file), str(path)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EvaluationError(f"{path}: not valid JSON ({exc})") from exc


def _box(value: Any) -> list[float] | None:
    """``[x, y, w, h]`` as floats when ``value`` is a list of 4 finite numbers with w, h >= 0, else None."""
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        return None
    try:
        box = [float(value[0]), float(value[1]), float(value[2]), float(value[3])]
    except (TypeError, ValueError, OverflowError):
        return None
    return box if math.isfinite(sum(box)) and box[2] >= 0 and box[3] >= 0 else None


def _records(data: Any, key: str, name: str) -> list[dict[str, Any]]:
    entries = data.get(key)
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise EvaluationError(f"{name}: '{key}' must be a list of objects")
    return entries


def _ids(entries: list[dict[str, Any]], key: str, name: str) -> set[int]:
    ids = [entry.get("id") for entry in entries]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise EvaluationError(f"{name}: every entry of '{key}' needs an integer 'id'")
    return set(ids)


def _load_ground_truth(source: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    """A validated copy of COCO ground truth with only what bbox evaluation reads."""
    data, name = _read(source, "ground truth")
    if not isinstance(data, Mapping):
        raise EvaluationError(f"{name}: expected a COCO object with 'images', 'annotations' and 'categories'")
    images, categories = _records(data, "images", name), _records(data, "categories", name)
    image_ids, category_ids = _ids(images, "images", name), _ids(categories, "categories", name)
    if not image_ids or not category_ids:
        raise EvaluationError(f"{name}: no images or no categories")
    annotations = []
    for index, ann in enumerate(_records(data, "annotations", name)):
        try:
            annotations.append(_clean_annotation(ann, index + 1, image_ids, category_ids))
        except ValueError as exc:
            raise EvaluationError(f"{name}: annotation {index}: {exc} ({_short(ann)})") from None
    return {
        "images": [{"id": image["id"]} for image in images],
        "categories": [{"id": cat["id"], "name": cat.get("name", str(cat["id"]))} for cat in categories],
        "annotations": annotations,
    }


def _clean_annotation(ann: dict[str, Any], new_id: int, image_ids: set[int], category_ids: set[int]) -> dict[str, Any]:
    """One ground-truth box as COCOeval reads it; ValueError naming the problem if it is malformed."""
    box = _box(ann.get("bbox"))
    if box is None:
        raise ValueError(_BAD_BOX)
    try:
        image_id, category_id = operator.index(ann["image_id"]), operator.index(ann["category_id"])
        iscrowd, area = operator.index(ann.get("iscrowd", 0)), float(ann.get("area", box[2] * box[3]))
    except (KeyError, TypeError, ValueError, OverflowError):
        raise ValueError("needs integer 'image_id' and 'category_id', integer 'iscrowd' and numeric 'area' if given") from None
    if image_id not in image_ids:
        raise ValueError("image_id is not in 'images'")
    if category_id not in category_ids:
        raise ValueError("category_id is not in 'categories'")
    return {"id": new_id, "image_id": image_id, "category_id": category_id, "bbox": box, "area": area, "iscrowd": iscrowd}


def _load_detections(source: Sequence[Mapping[str, Any]] | str | Path, coco_gt: COCO, what: str = "detections") -> list[dict[str, Any]]:
    """Validated copies of COCO-results detections (the evaluator writes into the dicts it is given);
    ``what`` names detections given in memory in error messages (a path names itself)."""
    data, name = _read(source, what)
    if not isinstance(data, (list, tuple)):
        raise EvaluationError(f"{name}: expected a JSON list of detections, got {type(data).__name__}")
    clean = _clean_plain_detections(data)
    if clean is None:  # one by one, to name the first that is wrong
        clean = []
        for index, det in enumerate(data):
            try:
                clean.append(_clean_detection(det))
            except ValueError as exc:
                raise EvaluationError(f"{name}: detection {index}: {exc} ({_short(det)})") from None
    for key, known, what in (("image_id", coco_gt.imgs, "image ids"), ("category_id", coco_gt.cats, "category ids")):
        unknown = sorted({det[key] for det in clean} - known.keys())
        if unknown:
            listed = ", ".join(str(i) for i in unknown[:5])
            raise EvaluationError(f"{name}: detections for {len(unknown)} {what} not in the ground truth (e.g. {listed})")
    return clean


def _clean_plain_detections(data: Sequence[Any]) -> list[dict[str, Any]] | None:
    """What :func:`_clean_detection` makes of each detection, checked in bulk: for detections of integer ids,
    numeric scores and boxes given as lists (JSON's and our writers'), all of them valid. None otherwise,
    for the detections to be checked one by one."""
    try:
        image_ids, category_ids = [det["image_id"] for det in data], [det["category_id"] for det in data]
        scores, boxes = [det["score"] for det in data], [det["bbox"] for det in data]
        if ({type(i) for i in image_ids} | {type(i) for i in category_ids}) - {int} or {type(v) for v in scores} - {int, float}:
            return None
        if {type(box) for box in boxes} - {list} or any(len(box) != 4 for box in boxes):
            return None
        box_array = np.array(boxes).reshape(-1, 4)  # numbers only give an integer or float array
        if box_array.dtype.kind not in "if":
            return None
        box_array, score_array = box_array.astype(np.float64), np.array(scores, dtype=np.float64)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    with np.errstate(over="ignore"):  # a sum overflowing to inf is what _box rejects
        box_sums = box_array.sum(axis=1)
    if not (np.isfinite(box_sums).all() and (box_array[:, 2:] >= 0).all() and np.isfinite(score_array).all()):
        return None
    areas = (box_array[:, 2] * box_array[:, 3]).tolist()
    return [
        {"image_id": image_id, "category_id": category_id, "bbox": box, "score": score, "area": area, "iscrowd": 0}
        for image_id, category_id, box, score, area in zip(image_ids, category_ids, box_array.tolist(), score_array.tolist(), areas)
    ]


def _clean_detection(det: Any) -> dict[str, Any]:
    """One detection as COCOeval reads it (with loadRes's area and crowd flag); ValueError naming the problem if it is malformed."""
    try:
        image_id, category_id = operator.index(det["image_id"]), operator.index(det["category_id"])
        score = float(det["score"])
        box = _box(det["bbox"])
    except (KeyError, TypeError, ValueError, OverflowError):
        raise ValueError("needs integer 'image_id' and 'category_id', 'bbox' and a numeric 'score'") from None
    if box is None:
        raise ValueError(_BAD_BOX)
    if not math.isfinite(score):
        raise ValueError("score must be finite")
    return {"image_id": image_id, "category_id": category_id, "bbox": box, "score": score, "area": box[2] * box[3], "iscrowd": 0}


def _short(value: Any, limit: int = 120) -> str:
    """``repr`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
