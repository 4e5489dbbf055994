"""Where the missing AP goes: TIDE's error types (Bolya et al., ECCV 2020) and the AP gained by fixing each.

The definitions and numbers are those of ``tidecv`` (its ``TIDE(pos_threshold=0.5,
background_threshold=0.1)`` on boxes), reimplemented on NumPy because ``tidecv`` walks every
detection in Python and needs OpenCV (the tests compare the two). Per image, the 100 best detections
are matched in score order to the same-class ground truth of highest IoU, a true positive at
IoU >= 0.5; crowd regions swallow unmatched detections of their class covering them by more than 0.5
(of the detection's area). Each false positive is then, in this order:

- **Loc**: IoU with an object of its class in [0.1, 0.5] (it would count if better placed);
- **Cls**: IoU >= 0.5 with an object of another class;
- **Dupe**: IoU >= 0.5 with an object of its class that a better detection already took;
- **Bkg**: IoU <= 0.1 with every object;
- **Both**: anything else (wrong class and badly placed);

and an object nothing matched, which no Loc or Cls error could claim, is **Miss**. The AP gained by a
type is AP50 (101 recall points, classes averaged) with every error of that type fixed, minus AP50 as it
is: a Loc or Cls detection becomes a true positive (the highest-scoring one per object; the others go),
Dupe, Bkg and Both detections are removed, and a missed object leaves the ground truth. Also:
``FalsePos``, AP50 if every false positive scored 0, and ``FalseNeg``, AP50 if no object were missed.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ssd.evaluation.boxes import DetectionTable, Detections, coco_boxes_xyxy, covered_fraction, pairwise_iou

ERROR_TYPES = ("Cls", "Loc", "Both", "Dupe", "Bkg", "Miss")  # tidecv's order
SPECIAL_TYPES = ("FalsePos", "FalseNeg")
POSITIVE_IOU, BACKGROUND_IOU, MAX_DETECTIONS = 0.5, 0.1, 100
_CODE = {kind: code for code, kind in enumerate(ERROR_TYPES[:-1], start=1)}  # a data point's error; 0: none


@dataclass(frozen=True)
class ErrorTypes:
    """AP50 as it is, the AP50 points each type costs (overall and per class name), and how many errors of each type."""

    ap50: float
    gained: dict[str, float]
    counts: dict[str, int]
    per_class: dict[str, dict[str, float | None]] = field(default_factory=dict)  # class -> {"AP50": ..., type: gain or None}

    def to_dict(self) -> dict[str, Any]:
        return {"AP50": self.ap50, "gained": self.gained, "counts": self.counts, "per_class": self.per_class}


@dataclass(frozen=True)
class _Points:
    """The data points (each image's best detections, images in the ground truth's order, each by
    descending score): class, score, true positive, error code, the class a Loc or Cls error counts for
    when fixed if it wins its object (-1 otherwise), and whether it lies on a crowd region (no data
    point, but still an error)."""

    label: np.ndarray
    score: np.ndarray
    correct: np.ndarray
    error: np.ndarray
    fixed_label: np.ndarray
    ignored: np.ndarray


def error_types(ground_truth: Mapping[str, Any], detections: Detections, class_names: Mapping[int, str] | None = None) -> ErrorTypes:
    """TIDE's error breakdown of COCO-results ``detections`` (or their table) on COCO ``ground_truth`` (module docstring)."""
    names = {int(c["id"]): str((class_names or {}).get(int(c["id"]), c.get("name", c["id"]))) for c in ground_truth["categories"]}
    points, positives, missed = _data_points(ground_truth, DetectionTable.of(detections))
    kept = ~points.ignored
    base = _mean_ap(points.label, points.score, points.correct, kept, positives)
    gained: dict[str, float] = {}
    per_class_gain: dict[str, dict[str, float | None]] = {name: {} for name in names.values()}
    for kind in ERROR_TYPES:
        fixed_positives = dict(positives)
        if kind == "Miss":
            for label in missed.tolist():
                fixed_positives[label] -= 1
            fixed = _mean_ap(points.label, points.score, points.correct, kept, fixed_positives)
        else:
            # Loc and Cls errors become true positives of the class they win (or go); Dupe, Bkg, Both go
            of_kind = points.error == _CODE[kind]
            keep = np.where(of_kind, points.fixed_label >= 0 if kind in ("Loc", "Cls") else False, kept)
            fixed = _mean_ap(np.where(of_kind, points.fixed_label, points.label), points.score, points.correct | of_kind, keep, positives)
        gained[kind] = max(fixed[0] - base[0], 0.0)
        for label in base[1]:  # None: the fix leaves the class nothing to measure (all its objects missed)
            ap = fixed[1].get(label)
            per_class_gain[names[label]][kind] = None if ap is None else max(ap - base[1][label], 0.0)
    false_pos = _mean_ap(points.label, points.score, points.correct, kept, positives, zero_false=True)
    labels, matched = np.unique(points.label[points.correct], return_counts=True)
    matched_of = dict(zip(labels.tolist(), matched.tolist()))
    false_neg = _mean_ap(points.label, points.score, points.correct, kept, {label: min(count, matched_of.get(label, 0)) for label, count in positives.items()})
    gained["FalsePos"], gained["FalseNeg"] = false_pos[0] - base[0], false_neg[0] - base[0]
    counts = {kind: int((points.error == code).sum()) for kind, code in _CODE.items()}
    counts["Miss"] = len(missed)
    per_class = {names[label]: {"AP50": ap, **per_class_gain[names[label]]} for label, ap in base[1].items()}
    return ErrorTypes(base[0], gained, counts, per_class)


def _data_points(ground_truth: Mapping[str, Any], table: DetectionTable) -> tuple[_Points, dict[int, int], np.ndarray]:
    """The data points, the objects per class (in order of first appearance) and the class of every missed object."""
    image_ids = np.array([int(image["id"]) for image in ground_truth["images"]], dtype=np.int64)
    annotations = ground_truth["annotations"]
    gt_slot = _slots(image_ids, np.array([int(a["image_id"]) for a in annotations], dtype=np.int64))
    gt_label = np.array([int(a["category_id"]) for a in annotations], dtype=np.int64)
    gt_boxes = coco_boxes_xyxy([a["bbox"] for a in annotations])
    gt_crowd = np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool)
    dt_slot = _slots(image_ids, table.image_id)
    inside = np.flatnonzero(dt_slot >= 0)
    order = inside[np.lexsort((-table.scores[inside], dt_slot[inside]))]  # by image, then descending score (ties: given order)
    dt_bounds = np.searchsorted(dt_slot[order], np.arange(len(image_ids) + 1))
    rank = np.arange(len(order)) - dt_bounds[dt_slot[order]]
    order = order[rank < MAX_DETECTIONS]
    dt_bounds = np.searchsorted(dt_slot[order], np.arange(len(image_ids) + 1))
    gt_order = np.flatnonzero(gt_slot >= 0)
    gt_order = gt_order[np.argsort(gt_slot[gt_order], kind="stable")]
    gt_bounds = np.searchsorted(gt_slot[gt_order], np.arange(len(image_ids) + 1))

    label, score, boxes = table.category_id[order], table.scores[order], table.boxes[order]
    points = _Points(label, score, np.zeros(len(order), bool), np.zeros(len(order), np.int8), np.full(len(order), -1, np.int64),
                     np.zeros(len(order), bool))
    missed = []
    for s in range(len(image_ids)):
        dts, gts = slice(dt_bounds[s], dt_bounds[s + 1]), gt_order[gt_bounds[s]:gt_bounds[s + 1]]
        objects, crowds = gts[~gt_crowd[gts]], gts[gt_crowd[gts]]
        if dts.start == dts.stop and not len(objects):
            continue
        missed.append(_image_points(
            _Points(label[dts], score[dts], points.correct[dts], points.error[dts], points.fixed_label[dts], points.ignored[dts]), boxes[dts],
            gt_label[objects], gt_boxes[objects], gt_label[crowds], gt_boxes[crowds],
        ))
    objects = gt_order[~gt_crowd[gt_order]]
    classes, counts = np.unique(gt_label[objects], return_counts=True)
    count_of = dict(zip(classes.tolist(), counts.tolist()))
    positives = {int(c): count_of[int(c)] for c in dict.fromkeys(gt_label[objects].tolist())}
    return points, positives, np.concatenate([np.zeros(0, np.int64), *missed])


def _slots(image_ids: np.ndarray, of: np.ndarray) -> np.ndarray:
    """Each entry of ``of``'s position in ``image_ids`` (its first), -1 where absent."""
    if not len(image_ids):
        return np.full(len(of), -1, np.int64)
    unique, first = np.unique(image_ids, return_index=True)
    at = np.minimum(np.searchsorted(unique, of), len(unique) - 1)
    return np.where(unique[at] == of, first[at], -1)


def _image_points(points: _Points, boxes: np.ndarray, obj_labels: np.ndarray, obj_boxes: np.ndarray, crowd_labels: np.ndarray,
                  crowd_boxes: np.ndarray) -> np.ndarray:
    """Fill one image's ``points`` (views into the whole run's arrays: matching and error types); the classes of its missed objects."""
    if not len(obj_labels):
        points.error[:] = _CODE["Bkg"]
        _points_on_crowds(points, boxes, crowd_labels, crowd_boxes)
        return obj_labels
    if not len(points.label):
        return obj_labels
    iou = pairwise_iou(boxes, obj_boxes)
    same = points.label[:, None] == obj_labels[None, :]
    same_iou = iou * same
    buffer = same_iou.copy()
    used = np.zeros(len(obj_labels), dtype=bool)
    for k in np.flatnonzero((same_iou >= POSITIVE_IOU).any(axis=1)):  # the others match nothing
        best = int(buffer[k].argmax())
        if buffer[k, best] >= POSITIVE_IOU:
            points.correct[k], used[best] = True, True
            buffer[:, best] = 0
    _points_on_crowds(points, boxes, crowd_labels, crowd_boxes)
    rows = np.arange(len(points.label))
    other_iou = iou * ~same
    same_target, other_target = same_iou.argmax(axis=1), other_iou.argmax(axis=1)
    same_best, other_best = same_iou[rows, same_target], other_iou[rows, other_target]
    wrong = ~points.correct
    loc = wrong & (BACKGROUND_IOU <= same_best) & (same_best <= POSITIVE_IOU)
    cls = wrong & ~loc & (other_best >= POSITIVE_IOU)
    dupe = wrong & ~loc & ~cls & ((same_iou * used).max(axis=1) >= POSITIVE_IOU)
    bkg = wrong & ~loc & ~cls & ~dupe & (iou.max(axis=1) <= BACKGROUND_IOU)
    both = wrong & ~loc & ~cls & ~dupe & ~bkg
    for kind, mask in (("Loc", loc), ("Cls", cls), ("Dupe", dupe), ("Bkg", bkg), ("Both", both)):
        points.error[mask] = _CODE[kind]
    # each object nothing matched goes to its best (first) Loc or Cls claimant; best_score starts at -1
    target = np.where(loc, same_target, other_target)
    candidates = np.flatnonzero((loc | cls) & ~used[target] & (points.score > -1.0))
    claimed, first = np.unique(target[candidates], return_index=True)
    claimants = candidates[first]
    points.fixed_label[claimants] = np.where(loc[claimants], points.label[claimants], obj_labels[claimed])
    unclaimed = ~used
    unclaimed[claimed] = False
    return obj_labels[unclaimed]


def _points_on_crowds(points: _Points, boxes: np.ndarray, crowd_labels: np.ndarray, crowd_boxes: np.ndarray) -> None:
    """Mark as ignored each unmatched detection covering a crowd region of its class by more than 0.5 of its area."""
    if not len(crowd_labels):
        return
    on_region = (covered_fraction(boxes, crowd_boxes) > POSITIVE_IOU) & (points.label[:, None] == crowd_labels[None, :])
    points.ignored[~points.correct & on_region.any(axis=1)] = True


def _mean_ap(label: np.ndarray, score: np.ndarray, correct: np.ndarray, keep: np.ndarray, positives: dict[int, int],
             zero_false: bool = False) -> tuple[float, dict[int, float]]:
    """AP50 averaged over the classes with an object or a data point, and per class, of the data points ``keep`` selects
    (``zero_false``: every false positive scored 0, every true positive 1)."""
    label, correct = label[keep], correct[keep]
    score = correct.astype(np.float64) if zero_false else score[keep]
    present, first = np.unique(label, return_index=True)
    order = np.lexsort((-score, label))  # by class, then descending score (ties: data point order)
    starts = np.searchsorted(label[order], present)
    bounds = {c: (start, end) for c, start, end in zip(present.tolist(), starts.tolist(), [*starts[1:].tolist(), len(order)])}
    in_order = present[np.argsort(first)].tolist()  # classes in order of first appearance
    labels = [c for c in {**positives, **dict.fromkeys(in_order)} if positives.get(c, 0) or c in bounds]
    ranked = correct[order]
    aps = {c: _ap(ranked[slice(*bounds.get(c, (0, 0)))], positives.get(c, 0)) for c in labels}
    return (sum(aps.values()) / len(aps) if aps else 0.0), aps


def _ap(correct: np.ndarray, positives: int) -> float:
    """COCO-style AP of data points ranked by score (True: a true positive): the precision envelope at 101 recall points
    (0 without objects)."""
    if positives <= 0 or not len(correct):
        return 0.0
    true = np.cumsum(correct, dtype=np.float64)
    precision = true / np.arange(1, len(correct) + 1)
    recall = true / positives
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    indices = np.searchsorted(recall, np.arange(101) / 100, side="left")  # k / 100, not linspace's rounding: tidecv's points
    return float(np.where(indices < len(precision), precision[np.minimum(indices, len(precision) - 1)], 0.0).sum() / 101)
