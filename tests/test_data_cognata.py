"""Cognata loading on synthetic data: counts, boxes, label maps, split, pairing, file lists, index cache."""
from __future__ import annotations

import csv
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ssd.data import build_dataset
from ssd.data import cognata_index as cognata_module
from ssd.data.cognata import REASON_NAMES, CognataDataset, ListedFrame, read_file_list, select_objects, split_frames
from ssd.data.cognata_index import parse_box, scan_cognata
from ssd.data.labels import COGNATA_CLASSES, LabelMap, cognata_fixed
from ssd.data.problems import DataError
from ssd.data.synth import COGNATA_CAMERA, COGNATA_SCENARIO, synth_cognata

FRAMES = 30
ANN = f"{COGNATA_SCENARIO}/{COGNATA_CAMERA}_ann"
PNG = f"{COGNATA_SCENARIO}/{COGNATA_CAMERA}_png"


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    return synth_cognata(tmp_path_factory.mktemp("cognata"), FRAMES, size=(64, 96), seed=3).root


@pytest.fixture
def root(synth_root: Path, tmp_path: Path) -> Path:
    """A private copy, free to damage, without the index caches other tests left."""
    return Path(shutil.copytree(synth_root, tmp_path / "data", ignore=shutil.ignore_patterns(".ssd_index_*")))


def csv_objects(path: Path, ignore=(2, 25, 31)) -> list[tuple[int, list[float]]]:
    """The objects of a CSV that pass the rules, read independently of the loader."""
    kept = []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            x1, y1, x2, y2 = (float(v) for v in row["bounding_box_2D"].strip("[]").split(","))
            w, h = x2 - x1, y2 - y1
            if int(row["object_class"]) in ignore or float(row["center_distance"]) > 300 or w < 8 or h < 8 or w * h < 50:
                continue
            kept.append((int(row["object_class"]), [x1, y1, x2, y2]))
    return kept


def test_counts_and_boxes_round_trip(synth_root: Path):
    dataset = CognataDataset(synth_root, "all")
    expected = {p.stem: csv_objects(p) for p in sorted((synth_root / ANN).glob("*.csv"))}
    frames_with_objects = [name for name, objects in expected.items() if objects]
    assert len(dataset) == len(frames_with_objects) > FRAMES // 2
    assert dataset.filtered["frame without a kept object"] == FRAMES - len(frames_with_objects)
    assert len(dataset.problems) == 0

    gt = dataset.coco_ground_truth()
    assert {c["id"] for c in gt["categories"]} == set(range(1, 15))
    by_image: dict[int, list] = {}
    for ann in gt["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    fixed = dict((cid, label) for label, (cid, _) in enumerate(COGNATA_CLASSES))
    for image in gt["images"]:
        assert (image["width"], image["height"]) == (96, 64)
        objects = expected[Path(image["file_name"]).stem]
        got = sorted((a["category_id"], [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]) for a in by_image[image["id"]])
        want = sorted((fixed[cid], box) for cid, box in objects)
        assert [g[0] for g in got] == [w[0] for w in want]
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in want], atol=1e-3)
    assert [dataset.category_of_label[label] for label in (4, 9)] == [4, 9]  # identity for Cognata


def test_item_contract(synth_root: Path, tiny_config):
    dataset = build_dataset("COGNATA", synth_root, "train", tiny_config)
    image, target = dataset[0]
    assert image.shape == (3, 64, 128) and image.dtype == torch.float32
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape[1] == 4
    assert ((target["boxes"] >= 0) & (target["boxes"] <= 1)).all()
    assert target["labels"].dtype == torch.int64 and (target["labels"] >= 1).all()
    assert target["orig_size"] == (64, 96) and isinstance(target["image_id"], int)


def test_label_maps(synth_root: Path):
    fixed = CognataDataset(synth_root, "all")
    assert fixed.num_classes == 15 and fixed.class_names[0] == "background"
    assert fixed.label_map.label_of_category[28] == 1 and fixed.label_map.label_of_category[44] == 14 and fixed.class_names[4] == "Car"

    derived = CognataDataset(synth_root, "all", label_map=None)
    # synthetic data has four learnable classes; the map follows their first appearance in file order
    assert derived.num_classes == 5
    first_seen = []
    for path in sorted((synth_root / ANN).glob("*.csv")):
        if csv_objects(path):
            with open(path, newline="") as handle:
                first_seen += [int(r["object_class"]) for r in csv.DictReader(handle) if int(r["object_class"]) not in (2, 25, 31)]
    assert list(derived.label_map.category_ids[1:]) == list(dict.fromkeys(first_seen))
    restored = LabelMap.from_dict(derived.label_map.to_dict())
    assert restored == derived.label_map
    again = CognataDataset(synth_root, "all", label_map=restored)
    assert again.label_map == derived.label_map and again.label_map.label_of_category == derived.label_map.label_of_category


def test_split_is_the_reference_split(synth_root: Path):
    count = 17
    order = list(range(count))
    random.Random(5).shuffle(order)
    assert split_frames(count, "train") == order[:14] and split_frames(count, "val") == order[14:]
    train, val = CognataDataset(synth_root, "train"), CognataDataset(synth_root, "val")
    every = CognataDataset(synth_root, "all")
    assert len(train) == round(0.8 * len(every)) and len(train) + len(val) == len(every)
    assert set(train.annotations.paths).isdisjoint(val.annotations.paths)
    assert CognataDataset(synth_root, "train").annotations.paths == train.annotations.paths


def test_pairing_by_name_with_missing_files(root: Path):
    frames = sorted(p.stem for p in (root / PNG).glob("*.png"))
    (root / PNG / f"{frames[2]}.png").unlink()
    (root / ANN / f"{frames[5]}.csv").unlink()
    dataset = CognataDataset(root, "all")
    reasons = {(Path(p.path).name, p.reason) for p in dataset.problems}
    assert (f"{frames[2]}.csv", "annotation file without image") in reasons
    assert (f"{frames[5]}.png", "image without annotation file") in reasons
    gt = dataset.coco_ground_truth()
    for image in gt["images"]:  # every later frame still carries its own CSV's boxes
        boxes = sorted([a["bbox"][0], a["bbox"][1]] for a in gt["annotations"] if a["image_id"] == image["id"])
        want = sorted(box[:2] for _, box in csv_objects(root / ANN / f"{Path(image['file_name']).stem}.csv"))
        assert boxes == want


def test_file_list(synth_root: Path, tmp_path: Path):
    every = CognataDataset(synth_root, "all")
    chosen = every.annotations.paths[3:7][::-1]
    listing = tmp_path / "val_set.csv"
    with open(listing, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["img", "ann"])
        for path in chosen:  # MLPerf's file may start paths with a separator
            writer.writerow(["/" + path, path.replace("_png", "_ann").replace(".png", ".csv")])
        writer.writerow([f"{PNG}/9999999999.png", "x"])
    assert [listed.image for listed in read_file_list(listing)[:4]] == chosen
    with pytest.raises(DataError, match=r"val_set.csv: entry 4 \(.*9999999999.png\) is not a frame of the dataset"):
        CognataDataset(synth_root, file_list=listing)  # every later sample would shift against the list
    listing.write_text("".join(f"{line}\n" for line in listing.read_text().splitlines()[:-1]))
    dataset = CognataDataset(synth_root, file_list=listing)
    assert dataset.annotations.paths == chosen and list(dataset.annotations.image_ids) == [0, 1, 2, 3]
    assert len(dataset.problems) == 0


def _annotation_of(image: str) -> str:
    return image.replace("_png", "_ann").replace(".png", ".csv")


@pytest.mark.hostile("MLPerf files and settings")
def test_file_lists_are_read_as_the_harness_reads_them(synth_root: Path, tmp_path: Path):
    """csv.DictReader: columns by name in any order, blank lines skipped, CRLF; ``ann`` must be the frame's own CSV."""
    chosen = CognataDataset(synth_root, "all").annotations.paths[2:5]
    listing = tmp_path / "val_set.csv"
    listing.write_bytes(("\ufeffextra,ann,img\r\n\r\n" + "".join(f"x,{_annotation_of(p)},{p}\r\n" for p in chosen)).encode())
    assert read_file_list(listing) == [ListedFrame(p, _annotation_of(p)) for p in chosen]
    assert CognataDataset(synth_root, file_list=listing).annotations.paths == chosen
    wrong = [f"{chosen[0]},{_annotation_of(chosen[0])}", f"{chosen[1]},{_annotation_of(chosen[2])}"]
    listing.write_text("img,ann\n" + "\n".join(wrong) + "\n")
    with pytest.raises(DataError, match=rf"entry 1 lists {re.escape(_annotation_of(chosen[2]))} as the annotation of {re.escape(chosen[1])}"):
        CognataDataset(synth_root, file_list=listing)
    listing.write_text(f"ann,img\n{_annotation_of(chosen[0])},{chosen[0]}\n{_annotation_of(chosen[1])},\n{_annotation_of(chosen[2])},{chosen[2]}\n")
    with pytest.raises(DataError, match=r"val_set.csv, line 3: no image path"):  # not left out: later samples would shift
        read_file_list(listing)
    listing.write_text("".join(f"{p}\n" for p in chosen))  # no header: image paths in the first column
    assert read_file_list(listing) == [ListedFrame(p) for p in chosen]


def test_index_cache_hit_and_invalidation(root: Path, monkeypatch):
    calls = []
    real = cognata_module.scan_frame
    monkeypatch.setattr(cognata_module, "scan_frame", lambda *a: calls.append(a) or real(*a))
    first = scan_cognata(root)
    assert len(calls) == FRAMES and list((root / COGNATA_SCENARIO).glob(".ssd_index_*.npz"))
    calls.clear()
    second = scan_cognata(root)
    assert calls == [] and second.images == first.images
    np.testing.assert_array_equal(second.boxes, first.boxes)
    csv_path = sorted((root / ANN).glob("*.csv"))[0]
    csv_path.write_text(csv_path.read_text() + "99,Car,0,\"[1, 1, 40, 40]\",8,0,10,x\n")
    third = scan_cognata(root)
    assert len(calls) == FRAMES and len(third.class_ids) == len(first.class_ids) + 1


def test_index_cache_in_fallback_folder_when_data_folder_unwritable(root: Path, tmp_path: Path):
    # a folder squatting on the cache file's name makes the data folder unwritable for it, even as root
    (root / COGNATA_SCENARIO / f".ssd_index_{COGNATA_CAMERA}.npz").mkdir()
    cache_dir = tmp_path / "cache"
    first = scan_cognata(root, cache_dir=cache_dir)
    assert len(list(cache_dir.glob("*.npz"))) == 1
    assert scan_cognata(root, cache_dir=cache_dir).images == first.images
    assert len(scan_cognata(root).images) == len(first.images)  # no writable place: still works


def test_parallel_scan_matches_serial(root: Path, monkeypatch):
    serial = scan_cognata(root, workers=1, cache_dir=None)
    for path in (root / COGNATA_SCENARIO).glob(".ssd_index_*"):
        path.unlink()
    monkeypatch.setattr(cognata_module, "PARALLEL_MIN_FRAMES", 1)
    parallel = scan_cognata(root, workers=2)
    assert parallel.images == serial.images
    np.testing.assert_array_equal(parallel.boxes, serial.boxes)
    np.testing.assert_array_equal(parallel.offsets, serial.offsets)


def test_parse_box():
    assert parse_box(" [1, 2.5, 3e1, 40] ") == (1.0, 2.5, 30.0, 40.0)
    for bad in ("1, 2, 3, 4", "[1, 2, 3]", "[1, 2, 3, nan]", "[__import__('os'), 1, 2, 3]", "[]"):
        with pytest.raises(ValueError):
            parse_box(bad)


# -- the object rules at their limits -----------------------------------------------------------
BOUNDARY_ROWS = [  # (class id, name, box, center_distance) -> reason expected
    ((8, "Car", "[10, 10, 18, 18]", "20"), "kept"),  # sides exactly 8 px
    ((8, "Car", "[10.5, 10, 18.5, 30]", "20"), "kept"),  # 8 px wide, off the pixel grid
    ((8, "Car", "[10, 10, 17.99, 30]", "20"), "too small"),  # 7.99 px wide
    ((8, "Car", "[10, 10, 30, 17.99]", "20"), "too small"),  # 7.99 px high
    ((8, "Car", "[10, 10, 16.25, 18]", "20"), "too small"),  # 6.25 x 8: area exactly 50, a side < 8
    ((8, "Car", "[10, 10, 30, 30]", "300"), "kept"),  # at the distance limit
    ((8, "Car", "[10, 10, 30, 30]", "299.99997"), "kept"),
    ((8, "Car", "[10, 10, 30, 30]", "300.00003"), "too far"),  # the next float32 above 300
    ((2, "Pole", "[10, 10, 30, 30]", "20"), "ignored class"),
    ((25, "Sky", "[10, 10, 30, 30]", "20"), "ignored class"),
    ((31, "Road", "[10, 10, 30, 30]", "20"), "ignored class"),
    ((9, "Truck", "[10, 10, 30, 30]", "20"), "kept"),
    ((25, "Sky", "[10, 10, 12, 12]", "900"), "ignored class"),  # the first rule that applies names it
]


def _boundary_index(tmp_path: Path):
    from support import write_frame

    rows = [[str(k), str(cid), name, box, distance, "0"] for k, ((cid, name, box, distance), _) in enumerate(BOUNDARY_ROWS)]
    write_frame(tmp_path, "0000000000", rows)
    return scan_cognata(tmp_path, cache_dir=tmp_path / "cache")


def test_object_rules_at_their_limits(tmp_path: Path):
    """Sides >= 8 px, center_distance <= 300 (float32, as read), classes 2, 25 and 31 ignored: each
    tested at, just inside and just outside its limit. The rule "area >= 50" cannot decide on its
    own: sides >= 8 already give an area >= 64, so a box with area 50 fails by its side."""
    index = _boundary_index(tmp_path)
    selection = select_objects(index, label_map=cognata_fixed())
    got = [REASON_NAMES.get(int(code), "kept") for code in selection.reasons]
    assert got == [reason for _, reason in BOUNDARY_ROWS]
    kept = selection.labels[selection.labels > 0]
    assert kept.tolist() == [cognata_fixed().labels_of(np.array([8]))[0]] * 4 + [cognata_fixed().labels_of(np.array([9]))[0]]


def test_a_configs_ignored_classes_replace_the_default(tmp_path: Path):
    index = _boundary_index(tmp_path)
    selection = select_objects(index, ignore_classes=(9,))  # first-appearance map: Pole, Sky and Road become classes
    got = [REASON_NAMES.get(int(code), "kept") for code in selection.reasons]
    assert got[8:] == ["kept", "kept", "kept", "ignored class", "too far"]
    assert selection.label_map.category_ids == (0, 8, 2, 25, 31)


CLIP_ROWS = [  # in a 48x64 (H x W) frame: (class id, box) -> (reason, reported as clipped, kept box)
    ((8, "[-1, -1, 20, 20]"), ("kept", False, [0, 0, 20, 20])),  # outside by the tolerance: clipped quietly
    ((8, "[-1.5, 5, 20, 20]"), ("kept", True, [0, 5, 20, 20])),
    ((8, "[5, -1.5, 20, 20]"), ("kept", True, [5, 0, 20, 20])),
    ((8, "[40, 5, 65, 20]"), ("kept", False, [40, 5, 64, 20])),
    ((8, "[40, 5, 65.5, 20]"), ("kept", True, [40, 5, 64, 20])),
    ((8, "[5, 30, 20, 49.5]"), ("kept", True, [5, 30, 20, 48])),
    ((8, "[64, 5, 80, 20]"), ("box outside the image", False, [64, 5, 64, 20])),
    ((8, "[5, 48, 20, 60]"), ("box outside the image", False, [5, 48, 20, 48])),
    ((8, "[63.5, 5, 80, 20]"), ("kept", True, [63.5, 5, 64, 20])),  # half a pixel left inside the image
    ((8, "[5, 47.5, 20, 60]"), ("kept", True, [5, 47.5, 20, 48])),
    ((8, "[10, 10, 10.5, 30]"), ("too small", False, [10, 10, 10.5, 30])),  # a sliver is small, not zero-area
    ((8, "[10, 10, 30, 10.5]"), ("too small", False, [10, 10, 30, 10.5])),
    ((8, "[10, 10, 10, 30]"), ("zero-area box", False, [10, 10, 10, 30])),
    ((0, "[10, 10, 30, 30]"), ("unknown class id", False, [10, 10, 30, 30])),  # class 0 is the background's id
]


def test_boxes_are_clipped_and_reported_beyond_one_pixel_and_slivers_are_small(tmp_path: Path):
    from support import write_frame

    rows = [[str(k), str(cid), "Car", box, "20", "0"] for k, ((cid, box), _) in enumerate(CLIP_ROWS)]
    write_frame(tmp_path, "0000000000", rows)
    selection = select_objects(scan_cognata(tmp_path, cache_dir=tmp_path / "cache"), label_map=cognata_fixed())
    got = [(REASON_NAMES.get(int(code), "kept"), bool(clipped), box) for code, clipped, box in
           zip(selection.reasons, selection.clipped, selection.boxes.tolist())]
    assert got == [expected for _, expected in CLIP_ROWS]
    assert selection.labels.tolist() == [4] * 6 + [-1] * 2 + [4] * 2 + [-1] * 4  # Car is label 4; objects not kept have none


def test_a_configs_dataset_section_selects_folders_cameras_classes_and_the_label_map(tmp_path: Path):
    from ssd.config import load_config
    from ssd.data.cognata import DEFAULT_IGNORE_CLASSES, config_selection

    fixed, trained = cognata_fixed(), LabelMap((0, 8, 9), ("background", "Car", "Truck"))
    assert config_selection(None) == {"folders": (), "cameras": (), "ignore_classes": DEFAULT_IGNORE_CLASSES, "label_map": fixed}
    assert config_selection(None, trained.to_dict())["label_map"] == trained
    base = load_config("baseline_8MP_ss_scales_fm1_5x5_all")
    selected = config_selection(base)
    assert selected["label_map"] == fixed and selected["ignore_classes"] == DEFAULT_IGNORE_CLASSES
    assert selected["folders"] == base.dataset.folders and selected["cameras"] == base.dataset.cameras
    assert config_selection(base, trained)["label_map"] == trained  # a checkpoint's map wins
    text = base.source.read_text()
    assert "use_label_info" not in text and "ignore_classes" not in text
    custom = tmp_path / "custom.yaml"
    custom.write_text(text.replace("\ndataset:\n", "\ndataset:\n  use_label_info: false\n  ignore_classes: [25]\n", 1))
    selected = config_selection(load_config(custom))
    assert selected["label_map"] is None and selected["ignore_classes"] == (25,)  # first appearance
    assert config_selection(load_config(custom), trained)["label_map"] == trained


def test_unknown_split_names_the_choices():
    with pytest.raises(DataError, match=r"^unknown split 'test': expected one of train, val, all$"):
        split_frames(10, "test")
    assert split_frames(10, "all") == list(range(10))
    assert len(split_frames(10, "train")) == 8 and sorted(split_frames(10, "train") + split_frames(10, "val")) == list(range(10))
