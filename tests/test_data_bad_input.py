"""Bad input is recorded with its file name (or raised in strict mode), never crashes an epoch midway."""
from __future__ import annotations

import json
import multiprocessing
import shutil
from pathlib import Path

import numpy as np
import pytest
from support import write_frame

from ssd.data import build_loader
from ssd.data.coco import CocoDataset
from ssd.data.cognata import CognataDataset
from ssd.data.problems import DataError
from ssd.errors import SSDError
from ssd.data.synth import COGNATA_CAMERA, COGNATA_SCENARIO, synth_coco

pytestmark = pytest.mark.hostile("malformed records")

SCENARIO, CAMERA = COGNATA_SCENARIO, COGNATA_CAMERA
GOOD_ROW = ["1", "8", "Car", "[10, 10, 40, 30]", "20.5", "0"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "cognata"
    for k in range(4):
        write_frame(root, f"{k:010d}", [GOOD_ROW])
    return root


def reasons(dataset) -> dict[str, str]:
    """File name -> reason of every recorded problem."""
    return {Path(p.path).name: p.reason for p in dataset.problems}


def test_corrupt_image_is_replaced_and_recorded(root: Path):
    png = root / SCENARIO / f"{CAMERA}_png" / "0000000001.png"
    png.write_bytes(png.read_bytes()[:60])  # header intact, data truncated
    dataset = CognataDataset(root, "all")
    assert len(dataset) == 4 and len(dataset.problems) == 0  # the header scan cannot tell
    images = [dataset[i] for i in range(len(dataset))]  # the epoch goes on
    assert [t["image_id"] for _, t in images] == [0, 2, 2, 3]
    assert images[1][1]["load_problems"][0].path.endswith("0000000001.png")
    assert reasons(dataset)["0000000001.png"].startswith("corrupt image: cannot decode")
    strict = CognataDataset(root, "all", strict=True)
    with pytest.raises(DataError, match="0000000001.png: corrupt image"):
        strict[1]


def test_corrupt_image_found_in_a_worker_reaches_the_main_dataset(root: Path):
    png = root / SCENARIO / f"{CAMERA}_png" / "0000000002.png"
    png.write_bytes(png.read_bytes()[:60])
    dataset = CognataDataset(root, "all")
    loader = build_loader(dataset, 2, train=False, num_workers=1)
    ids = [t["image_id"] for _, targets in loader for t in targets]
    assert ids == [0, 1, 3, 3]
    assert list(reasons(dataset)) == ["0000000002.png"]
    assert all("load_problems" not in t for _, targets in loader for t in targets)


def test_image_that_is_not_a_png_is_found_by_the_scan(root: Path):
    (root / SCENARIO / f"{CAMERA}_png" / "0000000003.png").write_bytes(b"not a png at all, just text")
    dataset = CognataDataset(root, "all")
    assert len(dataset) == 3
    assert reasons(dataset) == {"0000000003.png": "corrupt image: not a PNG file (bad or truncated header)"}


def test_csv_problems(root: Path):
    write_frame(root, "0000000010", [GOOD_ROW], header=["object_id", "object_class", "bounding_box_2D", "center_distance"])
    write_frame(root, "0000000011", [GOOD_ROW, ["2", "8", "Car", "[1, 2, 3]", "5", "0"], ["3", "8", "Car"], ["4", "x", "Car", "[1, 1, 20, 20]", "5", "0"]])
    write_frame(root, "0000000012", [GOOD_ROW, ["2", "77", "Spaceship", "[10, 10, 40, 40]", "5", "0"]])
    write_frame(root, "0000000013", [["1", "8", "Car", "[-20, 10, 30, 40]", "5", "0"], ["2", "8", "Car", "[100, 10, 130, 40]", "5", "0"],
                                     ["3", "8", "Car", "[10, 10, 10, 40]", "5", "0"]])
    write_frame(root, "0000000014", None)  # image without annotation file
    write_frame(root, "0000000015", [GOOD_ROW], image=False)  # annotation file without image
    (root / SCENARIO / f"{CAMERA}_ann" / "0000000016.csv").write_bytes(b"")
    write_frame(root, "0000000016", None)
    dataset = CognataDataset(root, "all")
    found = [(Path(p.path).name, p.reason.split(":")[0]) for p in dataset.problems]
    assert sorted(found) == sorted([
        ("0000000010.csv", "missing column"),
        ("0000000011.csv", "malformed row"),
        ("0000000011.csv", "malformed row"),
        ("0000000011.csv", "malformed row"),
        ("0000000012.csv", "unknown class id"),
        ("0000000013.csv", "zero-area box"),
        ("0000000013.csv", "box outside the image"),
        ("0000000013.csv", "box outside the image, clipped"),
        ("0000000014.png", "image without annotation file"),
        ("0000000015.csv", "annotation file without image"),
        ("0000000016.csv", "empty annotation file"),
    ])
    assert dataset.problems.counts()["malformed row"] == 3
    paths = dataset.annotations.paths
    assert [Path(p).stem for p in paths] == ["0000000000", "0000000001", "0000000002", "0000000003", "0000000011", "0000000012", "0000000013"]
    clipped = dataset.annotations.boxes[dataset.annotations.objects(paths.index(f"{SCENARIO}/{CAMERA}_png/0000000013.png"))]
    np.testing.assert_array_equal(clipped, [[0, 10, 30, 40]])
    with pytest.raises(DataError, match="0000000014.png: image without annotation file"):
        CognataDataset(root, "all", strict=True)


def test_missing_or_empty_dataset_is_one_clear_error(tmp_path: Path):
    with pytest.raises(SSDError, match=f"{tmp_path / 'nowhere'}: dataset folder does not exist"):
        CognataDataset(tmp_path / "nowhere")
    write_frame(tmp_path / "empty", "0000000001", [["1", "8", "Car", "[1, 1, 3, 3]", "5", "0"]])  # too small
    with pytest.raises(SSDError, match=f"{tmp_path / 'empty'}: no usable frame"):
        CognataDataset(tmp_path / "empty")
    with pytest.raises(SSDError, match="missing scenario folder"):
        CognataDataset(tmp_path / "empty", folders=["10002_Urban_Clear_Morning"], strict=True)


@pytest.fixture
def coco_root(tmp_path: Path) -> Path:
    return synth_coco(tmp_path / "coco", 15, size=(48, 64), seed=2).root


def test_coco_json_that_does_not_parse(coco_root: Path):
    path = coco_root / "annotations" / "instances_val2017.json"
    path.write_text(path.read_text()[:-20])
    with pytest.raises(DataError, match="instances_val2017.json: not a readable JSON file"):
        CocoDataset(coco_root, "val")


def test_coco_bad_annotations(coco_root: Path):
    path = coco_root / "annotations" / "instances_train2017.json"
    data = json.loads(path.read_text())
    image = data["images"][0]
    bad = [
        {"id": 900001, "image_id": image["id"], "category_id": 77, "bbox": [1, 1, 10, 10], "iscrowd": 0},
        {"id": 900002, "image_id": image["id"], "category_id": 1, "bbox": [1, 1, 0, 10], "iscrowd": 0},
        {"id": 900003, "image_id": image["id"], "category_id": 1, "bbox": [1, 1, "ten", 10], "iscrowd": 0},
        {"id": 900004, "image_id": image["id"], "category_id": 1, "bbox": [50, 30, 40, 40], "iscrowd": 0},
        {"id": 900005, "image_id": 123456789, "category_id": 1, "bbox": [1, 1, 10, 10], "iscrowd": 0},
    ]
    data["annotations"] += bad
    data["images"].append({"id": 555, "file_name": "000000000555.jpg", "width": 64, "height": 48})
    path.write_text(json.dumps(data))
    shutil.copy(coco_root / "train2017" / image["file_name"], coco_root / "train2017" / "stray.jpg")
    dataset = CocoDataset(coco_root, "train")
    found = sorted((Path(p.path).name, p.reason.split(":")[0]) for p in dataset.problems)
    assert found == sorted([
        (image["file_name"], "unknown category id"),
        (image["file_name"], "zero-area box"),
        (image["file_name"], "malformed bbox"),
        (image["file_name"], "box outside the image, clipped"),
        ("instances_train2017.json", "annotation for an unknown image id"),
        ("000000000555.jpg", "annotated image without image file"),
        ("stray.jpg", "image file not in instances_train2017.json"),
    ])
    index = dataset.annotations.image_ids.tolist().index(image["id"])
    assert [50.0, 30.0, 64.0, 48.0] in dataset.annotations.boxes[dataset.annotations.objects(index)].tolist()
    with pytest.raises(DataError):
        CocoDataset(coco_root, "train", strict=True)


def test_coco_corrupt_jpeg_at_load(coco_root: Path):
    dataset = CocoDataset(coco_root, "val")
    victim = dataset.image_path(0)
    victim.write_bytes(victim.read_bytes()[:100])
    image, target = dataset[0]
    assert target["image_id"] == int(dataset.annotations.image_ids[1])
    assert reasons(dataset)[victim.name].startswith("corrupt image")


@pytest.mark.parametrize("case", ["strict", "nothing readable"])
def test_an_error_in_a_loader_worker_is_raised_as_itself_in_the_main_process(root: Path, case: str):
    pngs = sorted((root / SCENARIO / f"{CAMERA}_png").glob("*.png"))
    for png in pngs[1:] if case == "strict" else pngs:
        png.write_bytes(png.read_bytes()[:60])
    dataset = CognataDataset(root, "all", strict=case == "strict")
    loader = build_loader(dataset, 2, train=True, num_workers=1)
    expected = r"0000000001.png: corrupt image: cannot decode: .* \(strict mode\)$" if case == "strict" else r"cognata: no readable image among the 4 tried from index \d$"
    before = set(multiprocessing.active_children())
    with pytest.raises(DataError, match=expected) as raised:
        list(loader)
    assert "worker" not in str(raised.value) and "Traceback" not in str(raised.value)
    # its worker stopped with the error, not when the kept traceback is collected (then only after a 5 s timeout)
    assert set(multiprocessing.active_children()) <= before


def test_without_substitution_an_unreadable_image_is_left_out_of_the_batch_and_listed(root: Path):
    png = root / SCENARIO / f"{CAMERA}_png" / "0000000002.png"
    png.write_bytes(png.read_bytes()[:60])
    dataset = CognataDataset(root, "all")
    dataset.substitute_unreadable = False
    loader = build_loader(dataset, 2, train=False, num_workers=1)
    batches = list(loader)
    assert [t["image_id"] for _, targets in batches for t in targets] == [0, 1, 3]
    assert [images.shape[0] for images, _ in batches] == [2, 1]
    assert [Path(p.path).name for p in loader.unreadable] == ["0000000002.png"] and list(reasons(dataset)) == ["0000000002.png"]


def test_a_row_whose_distance_is_not_a_number_is_dropped_and_counted(root: Path):
    write_frame(root, "0000000010", [GOOD_ROW, ["2", "8", "Car", "[5, 5, 30, 30]", "nan", "0"], ["3", "8", "Car", "[5, 5, 30, 30]", "-inf", "0"]])
    dataset = CognataDataset(root, "all")
    assert [(Path(p.path).name, p.reason) for p in dataset.problems] == [
        ("0000000010.csv", "malformed row: line 3: center_distance 'nan' is not a finite number"),
        ("0000000010.csv", "malformed row: line 4: center_distance '-inf' is not a finite number"),
    ]
    frame = dataset.annotations.paths.index(f"{SCENARIO}/{CAMERA}_png/0000000010.png")
    assert dataset.annotations.boxes[dataset.annotations.objects(frame)].tolist() == [[10, 10, 40, 30]]  # the good row alone


def test_annotation_and_list_files_starting_with_a_byte_order_mark_read_as_without(root: Path, tmp_path: Path):
    csv_path = root / SCENARIO / f"{CAMERA}_ann" / "0000000001.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf" + csv_path.read_bytes())
    listing = tmp_path / "val_set.csv"
    listing.write_bytes(b"\xef\xbb\xbfimg\n" + f"{SCENARIO}/{CAMERA}_png/0000000001.png\n".encode())
    dataset = CognataDataset(root, "all", file_list=listing)
    assert len(dataset.problems) == 0 and dataset.annotations.paths == [f"{SCENARIO}/{CAMERA}_png/0000000001.png"]
    assert dataset.annotations.boxes.tolist() == [[10, 10, 40, 30]]


def test_a_listed_frame_without_a_kept_object_stays_at_its_position_with_no_ground_truth(root: Path, tmp_path: Path):
    """MLPerf numbers samples by the file list's rows: dropping an empty frame would shift every later one."""
    write_frame(root, "0000000010", [["1", "2", "Pole", "[10, 10, 40, 30]", "20.5", "0"]])  # an ignored class only
    listing = tmp_path / "val_set.csv"
    frames = ["0000000001", "0000000010", "0000000002"]
    listing.write_text("img\n" + "".join(f"{SCENARIO}/{CAMERA}_png/{frame}.png\n" for frame in frames))
    dataset = CognataDataset(root, "all", file_list=listing)
    assert [Path(p).stem for p in dataset.annotations.paths] == frames and list(dataset.annotations.image_ids) == [0, 1, 2]
    assert [len(dataset.target_pixels(i)[0]) for i in range(3)] == [1, 0, 1]
    assert "0000000010.png" not in [Path(p).name for p in CognataDataset(root, "all").annotations.paths]  # a split drops it
    gt = dataset.coco_ground_truth()
    assert [image["id"] for image in gt["images"]] == [0, 1, 2] and {a["image_id"] for a in gt["annotations"]} == {0, 2}
