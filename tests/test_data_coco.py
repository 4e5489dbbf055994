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
