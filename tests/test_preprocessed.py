"""MLPerf Automotive's preprocessed Cognata format: written from raw frames, read back, hostile files refused."""
from __future__ import annotations

import ast
import csv
import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from harness_impl import harness_gt_boxes, harness_gt_rows, write_harness_frame
from support import TinyFiles

from ssd.cli.main import main
from ssd.config import load_config
from ssd.data import build_dataset
from ssd.data.preprocessed import PreprocessedCognata, UnsafePickleError, load_frame
from ssd.data.problems import DataError
from ssd.data.synth import synth_cognata
from ssd.loadgen import ACCURACY_LOG, read_accuracy_log


@pytest.fixture(scope="module")
def raw(tiny_files: TinyFiles, tmp_path_factory) -> Path:
    """Raw Cognata frames at the tiny config's model size (the format keeps no original size)."""
    return synth_cognata(tmp_path_factory.mktemp("raw"), 24, size=tuple(load_config(tiny_files.config).model.image_size), seed=4).root


@pytest.fixture(scope="module")
def preprocessed(raw: Path, tiny_files: TinyFiles, tmp_path_factory) -> tuple[Path, Path]:
    """``ssd data preprocess`` of a file list in shuffled order: (list, output folder)."""
    folder = tmp_path_factory.mktemp("pre")
    every = build_dataset("cognata", raw, "all", load_config(tiny_files.config))
    paths = [every.annotations.paths[i] for i in (2, 0, 3, 1)]
    listing = folder / "val_set.csv"
    listing.write_text("img,ann\n" + "".join(f"/{p},{p.replace('_png', '_ann').replace('.png', '.csv')}\n" for p in paths))
    out = folder / "val_2d"
    assert main(["data", "preprocess", "--data-path", str(raw), "--file-list", str(listing), "--out", str(out),
                 "--config", str(tiny_files.config)]) == 0
    return listing, out


def test_preprocess_writes_the_benchmarks_format(preprocessed, raw: Path, tiny_files: TinyFiles):
    listing, out = preprocessed
    assert sorted(p.name for p in out.glob("*.pkl")) == ["val_0.pkl", "val_1.pkl", "val_2.pkl", "val_3.pkl"]
    with open(out / "val_1.pkl", "rb") as handle:
        frame = pickle.load(handle)  # a plain pickle, as the harness reads it
    listed = build_dataset("cognata", raw, "val", load_config(tiny_files.config), file_list=listing)
    image, _ = listed[1]  # the validation transform's output for the list's second row
    assert set(frame) == {"img", "gt_boxes"} and frame["img"].dtype == np.float32 and frame["img"].shape == (1, *image.shape)
    assert np.array_equal(frame["img"][0], image.numpy())
    boxes, labels = listed.target_pixels(1)
    expected = np.zeros((len(labels), 7), np.float32)
    expected[:, :4], expected[:, 4] = boxes.numpy(), labels.numpy()
    assert frame["gt_boxes"].dtype == np.float32 and np.array_equal(frame["gt_boxes"], expected) and len(labels) > 0


def test_loadgen_and_evaluate_on_preprocessed_frames_equal_the_raw_path(preprocessed, raw: Path, tiny_files: TinyFiles, tmp_path: Path, capsys):
    listing, out = preprocessed
    common = ["--config", str(tiny_files.config), "--pretrained-model", str(tiny_files.checkpoint), "--device", "cpu"]
    assert main(["loadgen", *common, "--dataset", "cognata-preprocessed", "--data-path", str(out), "--accuracy",
                 "--output-dir", str(tmp_path / "pre")]) == 0
    assert main(["loadgen", *common, "--dataset", "cognata", "--data-path", str(raw), "--file-list", str(listing), "--accuracy",
                 "--output-dir", str(tmp_path / "raw")]) == 0
    pre_rows, raw_rows = read_accuracy_log(tmp_path / "pre" / ACCURACY_LOG), read_accuracy_log(tmp_path / "raw" / ACCURACY_LOG)
    assert sorted(pre_rows) == sorted(raw_rows) == [0, 1, 2, 3]
    for index in raw_rows:
        assert np.array_equal(pre_rows[index], raw_rows[index]), index
    assert (tmp_path / "pre" / "accuracy.txt").read_text().splitlines()[1:] == (tmp_path / "raw" / "accuracy.txt").read_text().splitlines()[1:]
    metrics = {}
    for name, data in (("pre", ["--dataset", "cognata-preprocessed", "--data-path", str(out)]),
                       ("raw", ["--dataset", "cognata", "--data-path", str(raw), "--file-list", str(listing)])):
        assert main(["evaluate", *common, *data, "--mlperf", "--num-workers", "0", "--output-dir", str(tmp_path / f"eval_{name}")]) == 0
        metrics[name] = json.loads((tmp_path / f"eval_{name}" / "metrics.json").read_text())
    assert metrics["pre"]["stats"] == metrics["raw"]["stats"] and metrics["pre"]["images"] == 4
    # the report of each folder, made from its files: the LoadGen ones score as accuracy.txt did
    config = ["--config", str(tiny_files.config)]
    assert main(["report", str(tmp_path / "raw"), *config]) == 2  # the run used a file list
    assert "the run used the file list of sha256" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "raw"), *config, "--file-list", str(listing)]) == 0
    assert main(["report", str(tmp_path / "pre"), *config]) == 0
    assert main(["report", str(tmp_path / "eval_pre")]) == 0
    reports = {name: json.loads((tmp_path / name / "report.json").read_text()) for name in ("raw", "pre", "eval_pre")}
    logged = (tmp_path / "raw" / "accuracy.txt").read_text().splitlines()[-1]
    assert logged == f"mAP = {reports['raw']['headline']['mAP']:.5f}" and reports["pre"]["headline"] == reports["raw"]["headline"]
    assert list(reports["raw"]["breakdowns"]) == ["size", "distance"] and list(reports["pre"]["breakdowns"]) == ["size"]  # frames keep no distance
    assert reports["eval_pre"]["headline"]["mAP"] == metrics["pre"]["stats"][0]


class RunsCode:
    """What a malicious pickle holds: loading it would call os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.mark.hostile("MLPerf files and settings")
def test_a_malicious_pickle_is_refused_without_running_it(tmp_path: Path, capsys):
    marker = tmp_path / "pwned"
    folder = tmp_path / "val_2d"
    folder.mkdir()
    (folder / "val_0.pkl").write_bytes(pickle.dumps({"img": np.zeros((1, 3, 4, 4), np.float32), "gt_boxes": RunsCode(marker)}))
    with pytest.raises(UnsafePickleError, match=r"val_0.pkl: refused to load: the pickle asks for (posix|os)\.system"):
        load_frame(folder / "val_0.pkl")
    assert main(["data", "stats", "--dataset", "cognata-preprocessed", "--data-path", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refused to load" in err[0] and "val_0.pkl" in err[0]
    assert not marker.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_frames_pickled_with_any_protocol_load(tmp_path: Path, protocol: int):
    image = np.arange(2 * 3 * 4, dtype=np.float32).reshape(1, 3, 2, 4)
    gt = np.array([[0, 0, 2, 1, 3, 0, 0]], np.float32)
    (tmp_path / "val_0.pkl").write_bytes(pickle.dumps({"img": image, "gt_boxes": gt}, protocol=protocol))
    frame = load_frame(tmp_path / "val_0.pkl")
    assert np.array_equal(frame["img"], image) and np.array_equal(frame["gt_boxes"], gt)
    dataset = PreprocessedCognata(tmp_path)
    assert len(dataset) == 1 and dataset.orig_size(0) == (2, 4) and dataset.annotations.labels.tolist() == [3]
    assert torch.equal(dataset.load_image(0), torch.from_numpy(image[0]))


@pytest.mark.parametrize(("payload", "message"), [
    ({"img": np.zeros((1, 3, 2, 2), np.float32)}, "expected a dict with 'img' and 'gt_boxes'"),
    ([1, 2], "expected a dict with 'img' and 'gt_boxes', got list"),
    ({"img": np.zeros((1, 3, 2, 2), np.uint8), "gt_boxes": np.zeros((0, 7), np.float32)}, r"'img' must be a floating-point array .* got uint8"),
    ({"img": np.zeros((1, 3, 2, 2), np.complex64), "gt_boxes": np.zeros((0, 7), np.float32)}, r"'img' must be a floating-point array .* got complex64"),
    ({"img": np.zeros((3, 2, 2), np.float32), "gt_boxes": np.zeros((0, 7), np.float32)}, r"'img' must be a floating-point array \[1, 3, H, W\], got float32 array \[3, 2, 2\]"),
    ({"img": np.zeros((1, 3, 2, 2), np.float32), "gt_boxes": np.zeros((1, 6), np.float32)}, r"'gt_boxes' must be a real numeric array \[G, 7\]"),
    ({"img": np.zeros((1, 3, 2, 2), np.float32), "gt_boxes": np.full((1, 7), np.nan, np.float32)}, "not finite"),
])
@pytest.mark.hostile("MLPerf files and settings")
def test_a_malformed_frame_is_an_error_naming_the_file(tmp_path: Path, payload, message):
    (tmp_path / "val_0.pkl").write_bytes(pickle.dumps(payload))
    with pytest.raises(DataError, match=message) as raised:
        load_frame(tmp_path / "val_0.pkl")
    assert "val_0.pkl" in str(raised.value)


def test_folder_errors(tmp_path: Path):
    frame = pickle.dumps({"img": np.zeros((1, 3, 2, 2), np.float32), "gt_boxes": np.zeros((0, 7), np.float32)})
    with pytest.raises(DataError, match="no val_<i>.pkl files"):
        PreprocessedCognata(tmp_path)
    for i in (0, 1, 3):
        (tmp_path / f"val_{i}.pkl").write_bytes(frame)
    with pytest.raises(DataError, match="val_2.pkl is missing"):  # every later sample would shift
        PreprocessedCognata(tmp_path)
    (tmp_path / "val_2.pkl").write_bytes(frame[: len(frame) // 2])
    with pytest.raises(DataError, match="val_2.pkl: not a readable pickle"):
        PreprocessedCognata(tmp_path)
    with pytest.raises(DataError, match="splits val and calib"):
        PreprocessedCognata(tmp_path, "train")
    (tmp_path / "val_2.pkl").write_bytes(frame)
    assert len(PreprocessedCognata(tmp_path)) == 4
    for label, shown in ((15.0, "15"), (0.0, "0"), (2.5, "2.5")):  # 14 classes: 1..14; 0 is the background
        gt = np.array([[0, 0, 1, 1, 3, 0, 0], [0, 0, 1, 1, label, 0, 0]], np.float32)
        (tmp_path / "val_1.pkl").write_bytes(pickle.dumps({"img": np.zeros((1, 3, 2, 2), np.float32), "gt_boxes": gt}))
        with pytest.raises(DataError, match=rf"val_1.pkl: ground-truth label {shown} is not one of the 14 classes"):
            PreprocessedCognata(tmp_path)


def test_preprocessing_refuses_what_the_format_cannot_hold(raw: Path, tiny_files: TinyFiles, preprocessed, tmp_path: Path, capsys):
    other = synth_cognata(tmp_path / "other", 4, size=(72, 120), seed=1).root
    argv = ["data", "preprocess", "--data-path", str(other), "--split", "all", "--out", str(tmp_path / "a"), "--config", str(tiny_files.config)]
    assert main(argv) == 2
    assert "72x120, but the format keeps no original size" in capsys.readouterr().err
    _, out = preprocessed  # four frames there; writing two would leave val_2 and val_3 of another list
    listing = tmp_path / "two.csv"
    listing.write_text("".join(line + "\n" for line in (preprocessed[0].read_text().splitlines()[1:3])))
    assert main(["data", "preprocess", "--data-path", str(raw), "--file-list", str(listing), "--out", str(out),
                 "--config", str(tiny_files.config)]) == 2
    assert "already holds val_2.pkl and others beyond the 2 frames" in capsys.readouterr().err
    (tmp_path / "a_file").write_text("x")
    assert main(["data", "preprocess", "--data-path", str(raw), "--out", str(tmp_path / "a_file"), "--config", str(tiny_files.config)]) == 2
    assert f"--out {tmp_path / 'a_file'}: exists and is not a folder" in capsys.readouterr().err
    config = load_config(tiny_files.config)
    with pytest.raises(DataError, match="for evaluation and LoadGen"):
        build_dataset("cognata-preprocessed", out, "val", config, train=True)


def _with_fractional_boxes(raw: Path, out: Path) -> Path:
    """A copy of ``raw`` whose CSVs write every second object's box with a fractional x1 (the
    harness's rows then mix Python ints and floats)."""
    shutil.copytree(raw, out)
    for annotation in out.rglob("*.csv"):
        with open(annotation, newline="") as handle:
            rows = list(csv.reader(handle))
        at = rows[0].index("bounding_box_2D")
        for number, row in enumerate(rows[1:]):
            if number % 2 == 0:
                box = ast.literal_eval(row[at])
                row[at] = str([box[0] + 0.25, *box[1:]])
        with open(annotation, "w", newline="") as handle:
            csv.writer(handle).writerows(rows)
    return out


@pytest.mark.parametrize(("values", "dtype"), [("whole", np.int64), ("fractional", np.float32)])
def test_frames_the_harness_writes_score_as_the_raw_path(raw: Path, tiny_files: TinyFiles, tmp_path: Path, values: str, dtype):
    root = raw if values == "whole" else _with_fractional_boxes(raw, tmp_path / "raw")
    config = load_config(tiny_files.config)
    every = build_dataset("cognata", root, "all", config)
    listed = []  # the harness's lists hold frames that keep an object (its transform fails on none)
    for path in every.annotations.paths:
        annotation = root / path.replace("_png", "_ann").replace(".png", ".csv")
        if harness_gt_rows(annotation):
            listed.append((path, annotation))
    listed = listed[:5]
    listing = tmp_path / "val_set.csv"
    listing.write_text("img,ann\n" + "".join(f"{p},{a.relative_to(root)}\n" for p, a in listed))
    frames = build_dataset("cognata", root, "val", config, file_list=listing)
    out = tmp_path / "val_2d"
    out.mkdir()
    for index, (_, annotation) in enumerate(listed):
        write_harness_frame(out / f"val_{index}.pkl", frames[index][0], harness_gt_rows(annotation))
    with open(out / "val_0.pkl", "rb") as handle:
        assert pickle.load(handle)["gt_boxes"].dtype == dtype  # what the harness wrote for these CSVs
    harness = PreprocessedCognata(out)
    for index in range(len(listed)):
        (boxes, labels), (harness_boxes, harness_labels) = frames.target_pixels(index), harness.target_pixels(index)
        assert torch.equal(harness_boxes, boxes) and torch.equal(harness_labels, labels) and len(labels), index

    common = ["--config", str(tiny_files.config), "--pretrained-model", str(tiny_files.checkpoint), "--device", "cpu"]
    paths = {"harness": ["--dataset", "cognata-preprocessed", "--data-path", str(out)],
             "raw": ["--dataset", "cognata", "--data-path", str(root), "--file-list", str(listing)]}
    for name, data in paths.items():
        assert main(["loadgen", *common, *data, "--accuracy", "--output-dir", str(tmp_path / f"loadgen_{name}")]) == 0
        assert main(["evaluate", *common, *data, "--mlperf", "--num-workers", "0", "--output-dir", str(tmp_path / f"eval_{name}")]) == 0
    accuracy = {name: (tmp_path / f"loadgen_{name}" / "accuracy.txt").read_text().splitlines()[1:] for name in paths}
    assert accuracy["harness"] == accuracy["raw"] and accuracy["raw"][-1].startswith("mAP = ")
    stats = {name: json.loads((tmp_path / f"eval_{name}" / "metrics.json").read_text())["stats"] for name in paths}
    assert stats["harness"] == stats["raw"] and max(stats["raw"]) > 0


@pytest.mark.parametrize(("rows", "dtype"), [
    ([[0, 0, 3, 2, 4, 0, 0]], np.int64),  # Python ints
    ([[0.0, 0.5, 3.0, 2.0, 4, 0, 0]], np.float32),  # a float among them
    ([], np.float32),  # no object: torch.tensor([]) is a float32 [0]
])
@pytest.mark.hostile("MLPerf files and settings")
def test_every_gt_dtype_the_harness_writes_loads(tmp_path: Path, rows: list, dtype):
    write_harness_frame(tmp_path / "val_0.pkl", torch.zeros(3, 2, 4), rows)
    frame = load_frame(tmp_path / "val_0.pkl")
    assert frame["gt_boxes"].dtype == np.float32 and frame["gt_boxes"].shape == (len(rows), 7)
    assert np.array_equal(frame["gt_boxes"], np.asarray(rows, np.float32).reshape(-1, 7))
    assert harness_gt_boxes(rows).dtype == dtype


@pytest.mark.hostile("MLPerf files and settings")
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint16, np.float32, np.float64, np.float16])
def test_gt_boxes_of_any_real_dtype_convert_once(tmp_path: Path, dtype):
    gt = np.array([[1, 2, 30, 20, 5, 0, 0], [0, 0, 8, 9, 14, 0, 0]]).astype(dtype)
    for image_dtype in (np.float32, np.float16, np.float64):
        (tmp_path / "val_0.pkl").write_bytes(pickle.dumps({"img": np.ones((1, 3, 2, 2), image_dtype), "gt_boxes": gt}))
        frame = load_frame(tmp_path / "val_0.pkl")
        assert frame["gt_boxes"].dtype == np.float32 and np.array_equal(frame["gt_boxes"], gt.astype(np.float64))
        assert frame["img"].dtype == np.float32 and np.array_equal(frame["img"], np.ones((1, 3, 2, 2)))
    assert PreprocessedCognata(tmp_path).annotations.labels.tolist() == [5, 14]


@pytest.mark.parametrize(("gt", "shown"), [
    (np.ones((1, 7), bool), "bool array [1, 7]"),
    (np.ones((1, 7), np.complex64), "complex64 array [1, 7]"),
    (np.array([[0, 0, 1, 1, 3, 0, 0]], object), "object array [1, 7]"),
    (np.array([["0"] * 7]), "<U1 array [1, 7]"),
    (np.zeros((0,), bool), "bool array [0]"),
    (np.zeros((3,), np.int64), "int64 array [3]"),
    ([[0, 0, 1, 1, 3, 0, 0]], "list"),
])
@pytest.mark.hostile("MLPerf files and settings")
def test_gt_boxes_that_are_not_real_numbers_are_refused(tmp_path: Path, gt, shown):
    (tmp_path / "val_0.pkl").write_bytes(pickle.dumps({"img": np.zeros((1, 3, 2, 2), np.float32), "gt_boxes": gt}))
    with pytest.raises(DataError, match=rf"val_0.pkl: 'gt_boxes' must be a real numeric array \[G, 7\].*got {re.escape(shown)}$"):
        load_frame(tmp_path / "val_0.pkl")


@pytest.mark.hostile("MLPerf files and settings")
def test_integers_float32_cannot_hold_exactly_are_refused(tmp_path: Path):
    for value, refused in ((2**24, False), (2**24 + 1, True)):  # float32 holds every integer up to 2^24
        gt = np.array([[0, 0, value, 1, 3, 0, 0]], np.int64)
        (tmp_path / "val_0.pkl").write_bytes(pickle.dumps({"img": np.zeros((1, 3, 2, 2), np.float32), "gt_boxes": gt}))
        if refused:
            with pytest.raises(DataError, match=f"val_0.pkl: 'gt_boxes' value {value} is too large"):
                load_frame(tmp_path / "val_0.pkl")
        else:
            assert load_frame(tmp_path / "val_0.pkl")["gt_boxes"][0, 2] == value


@pytest.mark.hostile("resume and caches")
def test_a_frame_rewritten_with_its_size_and_time_kept_is_read_again(tmp_path: Path):
    """cp -p / rsync -a keep size and modification time; the ground-truth cache must still notice."""
    image = np.zeros((1, 3, 2, 4), np.float32)
    for index, label in enumerate((3, 5)):
        (tmp_path / f"val_{index}.pkl").write_bytes(pickle.dumps({"img": image, "gt_boxes": np.array([[0, 0, 2, 1, label, 0, 0]], np.float32)}))
    assert PreprocessedCognata(tmp_path).annotations.labels.tolist() == [3, 5]
    assert list(tmp_path.glob(".ssd_index_*"))  # cached
    frame = tmp_path / "val_1.pkl"
    times = frame.stat()
    rewritten = pickle.dumps({"img": image, "gt_boxes": np.array([[0, 0, 2, 1, 7, 0, 0]], np.float32)})
    assert len(rewritten) == times.st_size
    frame.write_bytes(rewritten)
    os.utime(frame, ns=(times.st_atime_ns, times.st_mtime_ns))  # as cp -p leaves it
    assert frame.stat().st_mtime_ns == times.st_mtime_ns and frame.stat().st_size == times.st_size
    assert PreprocessedCognata(tmp_path).annotations.labels.tolist() == [3, 7]


@pytest.mark.hostile("silence and vague words")
@pytest.mark.parametrize(("box", "refused"), [([0, 0, 2, 1], False), ([2, 0, 0, 1], True), ([0, 1, 2, 0], True), ([1, 0, 1, 1], True)])
def test_a_box_with_swapped_or_equal_corners_is_named_when_the_folder_is_read(tmp_path: Path, box: list, refused: bool):
    gt = np.array([[0, 0, 2, 1, 3, 0, 0], [*box, 4, 0, 0]], np.float32)
    (tmp_path / "val_0.pkl").write_bytes(pickle.dumps({"img": np.zeros((1, 3, 2, 4), np.float32), "gt_boxes": gt}))
    if refused:
        with pytest.raises(DataError, match=r"val_0.pkl: ground-truth box 1 \[.*\] is not \[x1, y1, x2, y2\] with x2 > x1 and y2 > y1"):
            PreprocessedCognata(tmp_path)
    else:
        assert PreprocessedCognata(tmp_path).annotations.labels.tolist() == [3, 4]
