"""Synthetic data: boxes are the exact extents of what was drawn; files follow the real formats."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from ssd.data.synth import COGNATA_CAMERA, COGNATA_CLASSES, COGNATA_SCENARIO, synth_coco, synth_cognata


def test_cognata_boxes_are_tight_and_rows_for_the_filters_exist(tmp_path: Path):
    root = synth_cognata(tmp_path, 16, size=(120, 160), seed=9).root
    learnable = {c.class_id for c in COGNATA_CLASSES}
    classes, far = set(), 0
    for png in sorted((root / COGNATA_SCENARIO / f"{COGNATA_CAMERA}_png").glob("*.png")):
        image = np.asarray(Image.open(png)).astype(int)
        coloured = (image.max(axis=2) - image.min(axis=2)) > 60  # class colours; background and poles are greyish
        covered = np.zeros_like(coloured)
        with open(root / COGNATA_SCENARIO / f"{COGNATA_CAMERA}_ann" / f"{png.stem}.csv", newline="") as handle:
            for row in csv.DictReader(handle):
                x1, y1, x2, y2 = (int(v) for v in row["bounding_box_2D"].strip("[]").split(","))
                classes.add(int(row["object_class"]))
                if float(row["center_distance"]) > 300:
                    far += 1
                if int(row["object_class"]) not in learnable or float(row["center_distance"]) > 300 or min(x2 - x1, y2 - y1) < 8:
                    continue
                box = coloured[y1:y2, x1:x2]
                assert box[0].any() and box[-1].any() and box[:, 0].any() and box[:, -1].any(), f"{png.name}: loose box"
                covered[y1:y2, x1:x2] = True
        assert not (coloured & ~covered).any(), f"{png.name}: drawn object without a box"
    assert learnable <= classes and 2 in classes and far > 0


def test_coco_files_follow_the_format(tmp_path: Path):
    result = synth_coco(tmp_path, 10, size=(60, 80), seed=0)
    train = json.loads((tmp_path / "annotations" / "instances_train2017.json").read_text())
    val = json.loads((tmp_path / "annotations" / "instances_val2017.json").read_text())
    assert len(train["images"]) == 8 and len(val["images"]) == 2
    image_ids = [i["id"] for i in train["images"] + val["images"]]
    ann_ids = [a["id"] for a in train["annotations"] + val["annotations"]]
    assert len(set(image_ids)) == 10 and len(set(ann_ids)) == len(ann_ids) == result.objects
    for split, data in (("train", train), ("val", val)):
        for image in data["images"]:
            assert Image.open(tmp_path / f"{split}2017" / image["file_name"]).size == (80, 60)
        for ann in data["annotations"]:
            assert set(ann) == {"id", "image_id", "category_id", "bbox", "area", "iscrowd", "segmentation"}
            assert 0 < ann["area"] <= ann["bbox"][2] * ann["bbox"][3]
    assert [c["id"] for c in train["categories"]] == [1, 3, 10, 13]
