"""COCO loading on synthetic data: category mapping, crowd boxes, empty images, ids, ground truth."""
from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from ssd.data import build_dataset
from ssd.data.coco import CocoDataset
from ssd.data.problems import DataError
from ssd.data.synth import synth_coco

IMAGES = 40


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return synth_coco(tmp_path_factory.mktemp("coco"), IMAGES, size=(64, 96), seed=1).root


@pytest.fixture
def root(synth_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(synth_root, tmp_path / "coco"))


def load(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"instances_{split}2017.json").read_text())


def test_category_mapping_and_results_ids(synth_root: Path):
    dataset = CocoDataset(synth_root, "val")
    assert dataset.class_names == ["background", "person", "car", "traffic light", "stop sign"]
    assert dataset.label_map.label_of_category == {0: 0, 1: 1, 3: 2, 10: 3, 13: 4}
    assert [dataset.category_of_label[label] for label in (1, 2, 3, 4)] == [1, 3, 10, 13]


def test_val_keeps_empty_images_and_ground_truth_round_trips(synth_root: Path):
    data = load(synth_root, "val")
    dataset = CocoDataset(synth_root, "val")
    assert len(dataset) == len(data["images"]) == IMAGES // 5
    gt = dataset.coco_ground_truth()
    assert sorted(i["id"] for i in gt["images"]) == sorted(i["id"] for i in data["images"])
    want = sorted((a["image_id"], a["category_id"], a["bbox"]) for a in data["annotations"])
    got = sorted((a["image_id"], a["category_id"], a["bbox"]) for a in gt["annotations"])
    assert [w[:2] for w in want] == [g[:2] for g in got]
    np.testing.assert_allclose([w[2] for w in want], [g[2] for g in got])


def test_train_skips_images_without_boxes(synth_root: Path):
    data = load(synth_root, "train")
    with_boxes = {a["image_id"] for a in data["annotations"]}
    dataset = CocoDataset(synth_root, "train")
    assert sorted(dataset.annotations.image_ids.tolist()) == sorted(with_boxes)
    assert dataset.filtered["image without boxes (skipped in training)"] == len(data["images"]) - len(with_boxes) > 0


def test_item_ids_and_pixels(synth_root: Path, tiny_config):
    dataset = build_dataset("coco", synth_root, "val", tiny_config)
    index = int(np.flatnonzero(np.diff(dataset.annotations.offsets))[0])
    image, target = dataset[index]
    assert image.shape == (3, 64, 128)
    assert target["image_id"] == int(dataset.annotations.image_ids[index]) and target["orig_size"] == (64, 96)
    boxes_px, labels = dataset.target_pixels(index)
    torch.testing.assert_close(target["boxes"], boxes_px / torch.tensor([96, 64, 96, 64]))
    assert torch.equal(target["labels"], labels)


def test_crowd_boxes_left_out_of_targets_but_kept_for_evaluation(root: Path):
    data = load(root, "train")
    image = data["images"][0]
    crowd = {"id": 999999, "image_id": image["id"], "category_id": 1, "iscrowd": 1, "area": 100.0, "bbox": [1, 1, 20, 20],
             "segmentation": {"counts": [0, 400], "size": [64, 96]}}
    data["annotations"].append(crowd)
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    dataset = CocoDataset(root, "train", train=False)
    index = dataset.annotations.image_ids.tolist().index(image["id"])
    _, target = dataset[index]
    assert len(target["labels"]) == sum(1 for a in data["annotations"] if a["image_id"] == image["id"]) - 1
    gt = dataset.coco_ground_truth()
    assert [a["iscrowd"] for a in gt["annotations"] if a["bbox"] == [1.0, 1.0, 20.0, 20.0]] == [1]
    assert dataset.filtered["crowd box (evaluation only)"] == 1


def test_missing_folder_and_split_are_clear_errors(tmp_path: Path, synth_root: Path):
    with pytest.raises(DataError, match="does not exist"):
        CocoDataset(tmp_path / "nowhere", "val")
    with pytest.raises(DataError, match="annotation file does not exist"):
        CocoDataset(tmp_path, "val")
    with pytest.raises(DataError, match="unknown COCO split"):
        CocoDataset(synth_root, "test")
    with pytest.raises(DataError, match="unknown dataset kind"):
        build_dataset("voc", synth_root, "val", None)


def test_labels_follow_ascending_category_ids_whatever_the_files_order(root: Path):
    data = load(root, "val")
    data["categories"] = data["categories"][::-1]  # 13, 10, 3, 1
    data["categories"].insert(1, {"id": 2, "name": "bicycle", "supercategory": "vehicle"})  # an id without boxes
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    dataset = CocoDataset(root, "val")
    assert dataset.label_map.category_ids == (0, 1, 2, 3, 10, 13)
    assert dataset.class_names == ["background", "person", "bicycle", "car", "traffic light", "stop sign"]
    index = int(np.flatnonzero(np.diff(dataset.annotations.offsets))[0])
    start, stop = dataset.annotations.offsets[index : index + 2]
    listed = [a["category_id"] for a in data["annotations"] if a["image_id"] == int(dataset.annotations.image_ids[index]) and not a["iscrowd"]]
    assert sorted(dataset.category_of_label[int(label)] for label in dataset.annotations.labels[start:stop]) == sorted(listed)


def test_a_training_image_whose_boxes_are_all_crowd_is_skipped_one_with_another_box_kept(root: Path):
    data = load(root, "train")
    counts = Counter(a["image_id"] for a in data["annotations"])
    with_boxes = sorted(counts)
    mixed = next(i for i in with_boxes if counts[i] >= 2)
    only_crowd = next(i for i in with_boxes if i != mixed)
    for annotation in data["annotations"]:
        if annotation["image_id"] == only_crowd:
            annotation["iscrowd"] = 1
    first_of_mixed = next(a for a in data["annotations"] if a["image_id"] == mixed)
    first_of_mixed["iscrowd"] = 1
    mixed_boxes = sum(1 for a in data["annotations"] if a["image_id"] == mixed)
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    dataset = CocoDataset(root, "train")
    ids = dataset.annotations.image_ids.tolist()
    assert only_crowd not in ids and mixed in ids
    assert len(ids) == len(with_boxes) - 1
    _, target = dataset[ids.index(mixed)]
    assert len(target["labels"]) == mixed_boxes - 1  # the crowd box is not a training target


# -- the annotation rules at their edges ------------------------------------------------------------
W, H = 100, 80
EDGE_CASES = [  # (bbox [x, y, w, h], extra fields) -> (kept xyxy box or None, problem reason or None)
    ([10, 20, 30, 40], {}, [10, 20, 40, 60], None),
    ([10, 20, 0.5, 0.5], {}, [10, 20, 10.5, 20.5], None),  # thin but not empty
    ([10, 20, 0, 5], {}, None, "zero-area box: annotation 3: [10, 20, 0, 5]"),
    ([10, 20, 5, 0], {}, None, "zero-area box: annotation 4: [10, 20, 5, 0]"),
    ([-1, -1, 20, 20], {}, [0, 0, 19, 19], None),  # outside by the tolerance (1 px): clipped quietly
    ([-1.5, 5, 20, 20], {}, [0, 5, 18.5, 25], "box outside the image, clipped: annotation 6: [-1.5, 5, 20, 20] to 100x80"),
    ([5, -1.5, 20, 20], {}, [5, 0, 25, 18.5], "box outside the image, clipped: annotation 7: [5, -1.5, 20, 20] to 100x80"),
    ([81, 5, 20, 20], {}, [81, 5, 100, 25], None),  # 1 px past the right edge
    ([81.5, 5, 20, 20], {}, [81.5, 5, 100, 25], "box outside the image, clipped: annotation 9: [81.5, 5, 20, 20] to 100x80"),
    ([5, 61.5, 20, 20], {}, [5, 61.5, 25, 80], "box outside the image, clipped: annotation 10: [5, 61.5, 20, 20] to 100x80"),
    ([80, 60, 20, 20], {}, [80, 60, 100, 80], None),  # touching the corner
    ([100, 5, 20, 20], {}, None, "box outside the image: annotation 12: [100, 5, 20, 20] lies outside 100x80"),
    ([5, 80, 20, 20], {}, None, "box outside the image: annotation 13: [5, 80, 20, 20] lies outside 100x80"),
    ([-20, 5, 20, 20], {}, None, "box outside the image: annotation 14: [-20, 5, 20, 20] lies outside 100x80"),
    ([5, -20, 20, 20], {}, None, "box outside the image: annotation 15: [5, -20, 20, 20] lies outside 100x80"),
    ([10, 20, 30, 40], {"category_id": "1"}, None, "unknown category id: annotation 16: '1'"),
    ([10, 20, 30, 40], {"category_id": 2}, None, "unknown category id: annotation 17: 2"),
    ([10, 20, 30], {}, None, "malformed bbox: annotation 18: [10, 20, 30]"),
    ([10, 20, 30, 40], {"category_id": [3]}, None, "unknown category id: annotation 19: [3]"),
    ([10, 20, 30, 40], {"iscrowd": 1}, [10, 20, 40, 60], None),
]


def test_annotation_rules_at_their_edges(tmp_path: Path):
    """Each rule at, just inside and just outside its limit, in one file: a bad annotation is reported
    with its reason and skipped, and the ones after it still load."""
    from PIL import Image

    root = tmp_path / "coco"
    (root / "val2017").mkdir(parents=True)
    (root / "annotations").mkdir()
    Image.new("RGB", (W, H)).save(root / "val2017" / "a.jpg")
    annotations = [{"id": k + 1, "image_id": 7, "category_id": 3, "bbox": bbox, "area": 123.0, **extra}
                   for k, (bbox, extra, _, _) in enumerate(EDGE_CASES)]
    del annotations[0]["area"]  # computed from the box when absent
    strays = [{"id": 90, "image_id": 8, "category_id": 3, "bbox": [1, 1, 5, 5], "note": "x" * 300},  # an image not listed
              {"id": 91, "image_id": 9, "category_id": 3, "bbox": [1, 1, 5, 5]},  # listed, but its file is missing
              "not an annotation"]
    annotations = strays + annotations  # the annotations after them still load
    data = {"images": [{"id": 7, "file_name": "a.jpg", "width": W, "height": H}, {"id": 9, "file_name": "gone.jpg", "width": W, "height": H}],
            "annotations": annotations, "categories": [{"id": 3, "name": "car"}, {"id": 1, "name": "person"}]}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(data))
    dataset = CocoDataset(root, "val")
    kept = [case for case in EDGE_CASES if case[2] is not None]
    assert dataset.annotations.boxes.tolist() == [box for _, _, box, _ in kept]
    assert dataset.annotations.labels.tolist() == [2] * len(kept)  # category 3 is label 2 (ids sorted)
    assert dataset.annotations.iscrowd.tolist() == [False] * (len(kept) - 1) + [True]
    assert dataset.annotations.areas.tolist() == [30 * 40] + [123.0] * (len(kept) - 1)
    reasons = [(Path(p.path).name, p.reason) for p in dataset.problems]
    expected = [("a.jpg", reason) for _, _, _, reason in EDGE_CASES if reason is not None]
    unknown = [("instances_val2017.json", f"annotation for an unknown image id: {json.dumps(stray)[:200]}") for stray in (strays[0], strays[2])]
    assert reasons == [("gone.jpg", reasons[0][1])] + unknown + expected
    assert len(unknown[0][1]) == len("annotation for an unknown image id: ") + 200
