"""``ssd evaluate`` of a model and the seed's ``evaluate.py --full-eval`` on a tiny synthetic Cognata set."""
from __future__ import annotations

import csv
import json
import multiprocessing
import shutil
from pathlib import Path

import pytest
import torch
from support import TinyFiles, run_script, save_checkpoint

from ssd.cli.main import main
from ssd.config import load_config
from ssd.data import build_dataset
from ssd.data.synth import synth_coco
from ssd.checkpoint import load_model
from ssd.evaluation import score_detections


def evaluate_flags(files: TinyFiles, output: Path) -> list[str]:
    return ["--config", str(files.config), "--dataset", "Cognata", "--data-path", str(files.data), "--batch-size", "4",
            "--num-workers", "0", "--device", "cpu", "--output-dir", str(output)]


def test_results_written_and_reproducible(tiny_files: TinyFiles, tmp_path: Path, capsys):
    metrics = []
    for run in ("first", "second"):
        argv = ["evaluate", *evaluate_flags(tiny_files, tmp_path / run), "--pretrained-model", str(tiny_files.checkpoint), "--mlperf"]
        assert main(argv) == 0
        metrics.append(json.loads((tmp_path / run / "metrics.json").read_text()))
    assert capsys.readouterr().out.startswith(" Average Precision  (AP) @[ IoU=0.50:0.95")
    first, second = metrics
    assert first["stats"] == second["stats"] and first["per_class"] == second["per_class"]
    assert len(first["stats"]) == 12 and len(first["stat_labels"]) == 12 and "Car" in first["per_class"]
    assert first["thresholds"] == "torchmetrics" and first["decode"]["max_detections"] == 500 and first["decode"]["nms_threshold"] == 0.5
    detections = json.loads((tmp_path / "first" / "detections.json").read_text())
    assert detections == json.loads((tmp_path / "second" / "detections.json").read_text())
    assert detections and set(detections[0]) == {"image_id", "category_id", "bbox", "score"}
    assert len({d["image_id"] for d in detections}) == first["images"]
    # the written statistics are those of the written detections against the dataset's ground truth
    dataset = build_dataset("cognata", tiny_files.data, "val", load_config(tiny_files.config))
    rescored = score_detections(dataset.coco_ground_truth(), detections, dataset.annotations.image_ids.tolist(), thresholds="torchmetrics")
    assert first["stats"] == pytest.approx(rescored.stats, abs=1e-12) and first["images"] == len(dataset)
    plots = {p.name for p in (tmp_path / "first" / "plots").iterdir()}
    assert "ap_per_class.png" in plots and any(name.startswith("pr_") for name in plots)


def test_a_model_evaluation_keeps_its_loader_workers_until_its_block_ends(tiny_files: TinyFiles):
    """One worker serves every evaluation of the split and stops when the ``with`` block ends (``close``); left
    to the garbage collector, it would stop only after a 5-second timeout (ssd.data.loader)."""
    from ssd.distributed import setup_distributed
    from ssd.engine.model_evaluation import EvaluationSpec, ModelEvaluation

    before = set(multiprocessing.active_children())
    spec = EvaluationSpec(config=tiny_files.config, data_path=tiny_files.data, batch_size=4, num_workers=1)
    with ModelEvaluation(spec, setup_distributed("cpu"), tiny_files.checkpoint) as evaluation:
        first = evaluation.evaluate().result
        workers = set(multiprocessing.active_children()) - before
        assert len(workers) == 1
        assert evaluation.evaluate().result.stats == first.stats
        assert set(multiprocessing.active_children()) - before == workers  # the same worker, persistent
    assert set(multiprocessing.active_children()) <= before


def test_full_eval_one_csv_row_per_epoch_in_epoch_order(tiny_files: TinyFiles, tmp_path: Path, capsys):
    model, _ = load_model(tiny_files.checkpoint, tiny_files.config)
    run_folder = tmp_path / "run"
    run_folder.mkdir()
    for epoch in (10, 2):  # file-name order would put epoch 10 first
        with torch.no_grad():
            model.conf[0].bias.add_(0.1 * epoch)
        save_checkpoint(run_folder / f"ssd_ep{epoch}.pth", model, tiny_files.config, epoch)
    (run_folder / "last.pth").write_bytes((run_folder / "ssd_ep2.pth").read_bytes())  # not an epoch file
    flags = [*evaluate_flags(tiny_files, tmp_path / "out"), "--full-eval", "--save-folder", str(run_folder), "--save-path", "ssd.pth"]
    assert run_script("evaluate.py", [*flags, "--epochs", "12", "--lr", "0.1"]) == 0  # train.py's flags are accepted
    with open(tmp_path / "out" / "full_eval.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["epoch"] for row in rows] == ["2", "10"]
    assert {"mAP", "AP50", "AR100", "AP/Car"} <= set(rows[0])
    assert "epoch 2: mAP" in capsys.readouterr().out
    for row in rows:  # each row is that epoch's checkpoint evaluated on its own
        single = tmp_path / f"single{row['epoch']}"
        argv = ["evaluate", *evaluate_flags(tiny_files, single), "--pretrained-model", str(run_folder / f"ssd_ep{row['epoch']}.pth")]
        assert main(argv) == 0
        assert float(row["mAP"]) == pytest.approx(json.loads((single / "metrics.json").read_text())["stats"][0], abs=1e-6)


@pytest.mark.parametrize("problem", ["no checkpoint given", "missing checkpoint", "other config", "no epoch files", "other dataset"])
def test_bad_input_is_one_error_line(problem: str, tiny_files: TinyFiles, tmp_path: Path, capsys):
    argv = ["evaluate", *evaluate_flags(tiny_files, tmp_path / "out"), "--pretrained-model", str(tiny_files.checkpoint)]
    if problem == "no checkpoint given":
        argv, expected = argv[:-2], "--pretrained-model"
    elif problem == "missing checkpoint":
        argv[-1], expected = str(tmp_path / "gone.pth"), "checkpoint not found"
    elif problem == "other config":
        argv[2], expected = "coco_300x300", "shape"
    elif problem == "no epoch files":
        argv, expected = [*argv[:-2], "--full-eval", "--save-folder", str(tmp_path)], "no SSD_ep<N>.pth"
    else:  # a Cognata checkpoint on COCO
        coco = synth_coco(tmp_path / "coco", 5, size=(48, 64)).root
        argv[3:7], expected = ["--dataset", "Coco", "--data-path", str(coco)], "the model has 15 classes, the dataset 5"
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


def _corrupt_copy(tiny_files: TinyFiles, tmp_path: Path) -> tuple[TinyFiles, list[Path], Path]:
    """A copy of the tiny Cognata set whose second validation image is truncated (its header still reads)."""
    data = tmp_path / "cognata"
    shutil.copytree(tiny_files.data, data)
    val = build_dataset("cognata", data, "val", load_config(tiny_files.config))
    paths = [val.image_path(i) for i in range(len(val))]
    paths[1].write_bytes(paths[1].read_bytes()[:60])
    return TinyFiles(tiny_files.config, tiny_files.checkpoint, data, tmp_path), paths, paths[1]


@pytest.mark.parametrize("workers", ["0", "1"])
def test_an_unreadable_image_is_left_out_of_the_score_not_replaced(workers: str, tiny_files: TinyFiles, tmp_path: Path, capsys):
    files, paths, victim = _corrupt_copy(tiny_files, tmp_path)
    readable = tmp_path / "readable.csv"
    readable.write_text("".join(f"{p.relative_to(files.data).as_posix()}\n" for p in paths if p != victim))
    outputs = {}
    for name, extra in (("corrupt", ["--report"]), ("without", ["--file-list", str(readable)])):
        argv = ["evaluate", *evaluate_flags(files, tmp_path / name), "--pretrained-model", str(files.checkpoint), "--mlperf", *extra]
        argv[argv.index("--num-workers") + 1] = workers
        assert main(argv) == 0
        outputs[name] = json.loads((tmp_path / name / "metrics.json").read_text()), json.loads((tmp_path / name / "detections.json").read_text())
    (corrupt, corrupt_detections), (without, without_detections) = outputs["corrupt"], outputs["without"]
    assert corrupt["stats"] == without["stats"] and corrupt["per_class"] == without["per_class"] and corrupt["stats"][0] > 0
    # the same detections, no image twice (a Cognata image id is its position in the list, so it is left out)
    strip = lambda detections: sorted((d["category_id"], d["bbox"], d["score"]) for d in detections)  # noqa: E731
    assert strip(corrupt_detections) == strip(without_detections)
    assert len({d["image_id"] for d in corrupt_detections}) == len(paths) - 1
    assert corrupt["images"] == without["images"] == len(paths) - 1
    assert corrupt["unreadable"] == {"count": 1, "images": [str(victim)]} and without["unreadable"]["count"] == 0
    assert f"warning: 1 unreadable image left out of the score: {victim}" in capsys.readouterr().err
    # the report scores what the evaluation scored, made with it or later from its folder
    assert main(["report", str(tmp_path / "corrupt"), "--output-dir", str(tmp_path / "later")]) == 0
    for folder in ("corrupt", "later"):
        report = json.loads((tmp_path / folder / "report.json").read_text())
        assert report["headline"]["mAP"] == corrupt["stats"][0] and report["counts"]["images"] == len(paths) - 1, folder


def test_no_readable_image_at_all_is_one_error_line(tiny_files: TinyFiles, tmp_path: Path, capsys):
    files, paths, _ = _corrupt_copy(tiny_files, tmp_path)
    for path in paths:
        path.write_bytes(path.read_bytes()[:60])
    argv = ["evaluate", *evaluate_flags(files, tmp_path / "out"), "--pretrained-model", str(files.checkpoint)]
    argv[argv.index("--num-workers") + 1] = "1"
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("evaluating")]  # the bar
    assert len(err) == 1 and err[0].startswith("error: ") and f"none of the {len(paths)} images to evaluate could be read" in err[0], err


def test_strict_mode_in_a_loader_worker_is_one_error_line_naming_the_file(tiny_files: TinyFiles, tmp_path: Path, capsys):
    files, _, victim = _corrupt_copy(tiny_files, tmp_path)
    argv = ["evaluate", *evaluate_flags(files, tmp_path / "out"), "--pretrained-model", str(files.checkpoint), "--strict"]
    argv[argv.index("--num-workers") + 1] = "1"
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith("evaluating")]  # the bar
    assert err == [f"error: {victim}: corrupt image: cannot decode: {err[0].split('cannot decode: ', 1)[1]}"], err
    assert "Traceback" not in err[0] and "worker" not in err[0]
