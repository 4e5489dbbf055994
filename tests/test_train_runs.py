"""Training as whole runs in processes of their own: the seed's command, two gloo processes, two torchrun
nodes, resume after a stop or a kill, crash-safe checkpoints (the steps themselves: test_train.py)."""
from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest
import torch

import forked
from support import ROOT, metrics_rows

from ssd.checkpoint import atomic_save, read_checkpoint
from ssd.config import load_config
from ssd.data import build_dataset

TINY_TRAIN = ["--batch-size", "2", "--num-workers", "0", "--device", "cpu", "--no-progress", "--lr", "0.01"]


def _run(args: list[str], timeout: int = 240, env_extra: dict | None = None) -> None:
    """Run ``args`` in ROOT to a zero exit (forked with torch imported; a launcher's workers are new interpreters)."""
    done = forked.run(args, ROOT, {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}, timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]



def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _evaluated_map(checkpoint: Path, data: Path, config: Path, tmp_path: Path, *flags: str) -> float:
    """mAP of ``ssd evaluate`` (one process, the dataset's decoding, COCO thresholds) as metrics.csv rounds it."""
    from ssd.cli.main import main

    output = tmp_path / "evaluated"
    argv = ["evaluate", "--dataset", "cognata", "--data-path", str(data), "--config", str(config), "--pretrained-model", str(checkpoint),
            "--device", "cpu", "--num-workers", "0", "--batch-size", "2", "--output-dir", str(output), *flags]
    assert main(argv) == 0
    return float(f"{json.loads((output / 'metrics.json').read_text())['stats'][0]:.6g}")


def _two_nodes(launch: list[list[str]], folders: list[Path], train_args: list[str]) -> None:
    """Run ``train.py`` as two torchrun "nodes" on this machine (one CPU process each, gloo),
    node ``i`` launched with ``launch[i]`` and saving into ``folders[i]``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [
        forked.start([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1", *node_launch,
                      "train.py", *train_args, "--save-folder", str(folder)], ROOT, env)
        for node_launch, folder in zip(launch, folders)
    ]
    codes = [node.wait(300) for node in nodes]
    outputs = ["".join(node.output()) for node in nodes]
    for node in nodes:
        node.close()
    assert codes == [0, 0], "\n".join(output[-3000:] for output in outputs)


@pytest.mark.slow(cores=2)  # two ranks; first in its module, so that it starts beside a run that mostly waits
def test_two_processes_on_one_node_or_two_train_evaluate_checkpoint_and_resume_alike(tmp_path, cognata, config_path):
    """Two gloo processes on one node, uninterrupted; then two "nodes" (c10d rendezvous on 127.0.0.1),
    each with its own save folder as on machines without shared storage: one checkpoint (on rank 0's
    node), evaluation gathered from both ranks, and a resume where the node without the checkpoint has
    become rank 0 (fixed with a static rendezvous) ends as the one-node run does, bitwise."""
    train_args = ["--dataset", "cognata", "--data-path", str(cognata), "--config", str(config_path), "--multistep", "1", *TINY_TRAIN]
    straight = tmp_path / "straight"
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", f"--master_port={_free_port()}", "train.py",
          *train_args, "--epochs", "2", "--save-folder", str(straight)])
    val_set = build_dataset("cognata", cognata, "val", load_config(config_path))
    row = metrics_rows(straight)[-1]
    assert int(row["images_evaluated"]) == len(val_set) and len(val_set) > 2
    assert torch.isfinite(torch.tensor([float(row["loss"]), float(row["loss_localisation"])])).all()
    # the two ranks' halves, gathered, score as one process scoring the whole set
    assert float(row["mAP"]) == _evaluated_map(straight / "last.pth", cognata, config_path, tmp_path / "straight_eval")
    assert len(read_checkpoint(straight / "last.pth")["rng"]) == 2  # each rank's random state

    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id", "first"]
    resumed = [tmp_path / "resumed_a", tmp_path / "resumed_b"]
    _two_nodes([rendezvous, rendezvous], resumed, [*train_args, "--epochs", "1"])

    (holder,) = [folder for folder in resumed if (folder / "last.pth").is_file()]  # rank 0's node only
    (row,) = metrics_rows(holder)
    assert not [path for folder in resumed if folder != holder for path in folder.glob("*.pth")]
    assert int(row["images_evaluated"]) == len(val_set)
    assert float(row["mAP"]) == _evaluated_map(holder / "last.pth", cognata, config_path, tmp_path)
    assert len(read_checkpoint(holder / "last.pth")["rng"]) == 2

    empty = next(folder for folder in resumed if folder != holder)
    port = str(_free_port())
    static = [["--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", port] for rank in (0, 1)]
    _two_nodes(static, [empty, holder], [*train_args, "--epochs", "2"])  # the node without it is rank 0 now

    expected, got = read_checkpoint(straight / "last.pth"), read_checkpoint(empty / "last.pth")
    assert got["epoch"] == expected["epoch"] == 1
    assert read_checkpoint(holder / "last.pth")["epoch"] == 0  # rank 1 writes nothing
    assert [(r["epoch"], r["loss"], r["mAP"]) for r in metrics_rows(empty)] == [(r["epoch"], r["loss"], r["mAP"]) for r in metrics_rows(straight)]
    for key, value in expected["model_state_dict"].items():
        assert torch.equal(value, got["model_state_dict"][key]), key


@pytest.mark.slow
def test_seed_command_runs_one_tiny_epoch(tmp_path, cognata, config_path):
    out = tmp_path / "out"
    _run([sys.executable, "-m", "torch.distributed.launch", "--nproc_per_node=1", "train.py", "--model", "ssd",
          "--batch-size", "2", "--dataset", "Cognata", "--data-path", str(cognata), "--save-folder", str(out),
          "--config", str(config_path), "--save-path", "test.pth", "--epoch", "1", "--num-workers", "0", "--device", "cpu",
          "--no-channels-last"])
    assert (out / "test_ep0.pth").is_file() and (out / "last.pth").is_file() and (out / "best.pth").is_file()
    checkpoint = read_checkpoint(out / "last.pth")
    assert checkpoint["epoch"] == 0 and checkpoint["num_classes"] == 15
    assert checkpoint["class_names"][4] == "Car"
    (row,) = metrics_rows(out)
    assert float(row["loss"]) > 0 and float(row["mAP"]) == _evaluated_map(out / "last.pth", cognata, config_path, tmp_path, "--no-channels-last")


def _kill_during_second_epoch(command: list[str], folder: Path, delay: float) -> None:
    """Start ``command`` and SIGKILL it ``delay`` seconds after the first epoch's checkpoint exists
    (0: in the gap between the checkpoint and the metrics row; later: in the next epoch's training
    or evaluation)."""
    process = forked.start(command, ROOT, {**os.environ, "OMP_NUM_THREADS": "1"})
    process.wait_until((folder / "last.pth").is_file, 240)
    time.sleep(delay)
    process.kill()


def _kill_during_evaluation_of(command: list[str], epoch: int) -> None:
    """Start ``command`` (with progress bars on) and SIGKILL it once epoch ``epoch``'s evaluation
    has started, as its progress bar shows."""
    process = forked.start(command, ROOT, {**os.environ, "OMP_NUM_THREADS": "1"})

    def evaluating() -> bool:
        seen = process.output()[1]
        started = seen.find(f"epoch {epoch}")
        return started >= 0 and "evaluating" in seen[started:]

    process.wait_until(evaluating, 240)
    seen = process.output()[1]
    process.kill()
    assert "evaluating" in seen[max(seen.find(f"epoch {epoch}"), 0):], seen[-2000:]


@pytest.mark.slow
def test_resume_continues_the_schedule_and_reproduces_an_uninterrupted_run_bitwise(tmp_path, cognata, config_path):
    """Stopped after epoch 0, or killed at once after it, during epoch 1's evaluation and again later
    (with augmentation and two loader workers), the same command resumes and ends with the uninterrupted run's losses and weights, bitwise."""
    common = [sys.executable, "train.py", "--dataset", "cognata", "--data-path", str(cognata), "--config", str(config_path),
              "--multistep", "1", *TINY_TRAIN[:2], "--num-workers", "2", *TINY_TRAIN[4:]]
    _run([*common, "--save-folder", str(tmp_path / "straight"), "--epochs", "2"])
    _run([*common, "--save-folder", str(tmp_path / "resumed"), "--epochs", "1"])
    _run([*common, "--save-folder", str(tmp_path / "resumed"), "--epochs", "2"])  # same command, continues
    killed = [*common, "--save-folder", str(tmp_path / "killed"), "--epochs", "2"]
    _kill_during_second_epoch(killed, tmp_path / "killed", 0.0)
    assert read_checkpoint(tmp_path / "killed" / "last.pth")["epoch"] == 0
    _kill_during_evaluation_of([arg for arg in killed if arg != "--no-progress"], epoch=1)
    assert read_checkpoint(tmp_path / "killed" / "last.pth")["epoch"] == 0
    assert [r["epoch"] for r in metrics_rows(tmp_path / "killed")] == ["0"]
    _kill_during_second_epoch(killed, tmp_path / "killed", 5.0)  # again, later: start-up, training or evaluation
    _run([*common, "--save-folder", str(tmp_path / "killed"), "--epochs", "2"])
    assert not list((tmp_path / "killed").glob(".*.tmp"))
    straight = read_checkpoint(tmp_path / "straight" / "last.pth")
    assert straight["epoch"] == 1
    for name in ("resumed", "killed"):
        other = read_checkpoint(tmp_path / name / "last.pth")
        assert other["epoch"] == 1 and other["scheduler"]["last_epoch"] == straight["scheduler"]["last_epoch"] > 0
        rows, straight_rows = metrics_rows(tmp_path / name), metrics_rows(tmp_path / "straight")
        assert [r["epoch"] for r in rows] == ["0", "1"]
        assert [(r["loss"], r["mAP"]) for r in rows] == [(r["loss"], r["mAP"]) for r in straight_rows], name
        for key, value in straight["model_state_dict"].items():
            assert torch.equal(value, other["model_state_dict"][key]), (name, key)
    lrs = [float(r["lr"]) for r in metrics_rows(tmp_path / "resumed")]
    assert lrs[1] == pytest.approx(lrs[0] * 0.1)  # the x0.1 milestone at epoch 1 was applied after resuming


KILLER = """
import sys, torch
from pathlib import Path
from ssd.checkpoint import atomic_save
path = Path(sys.argv[1])
payload = {"weights": torch.randn(1_000_000)}
print("ready", flush=True)
while True:
    atomic_save(payload, path)
"""


def test_kill_9_during_checkpoint_writing_leaves_a_loadable_checkpoint(tmp_path):
    path = tmp_path / "last.pth"
    atomic_save({"weights": torch.zeros(3), "epoch": 0}, path)
    for delay in (0.05, 0.2, 0.45):
        process = forked.start([sys.executable, "-c", KILLER, str(path)], ROOT)
        assert process.wait_until(lambda: process.output()[0] == "ready\n", 60, interval=0.01)
        time.sleep(delay)
        assert process.kill() == -signal.SIGKILL  # killed while writing, not finished
        checkpoint = read_checkpoint(path)  # old or new, never truncated
        assert checkpoint["weights"].numel() in (3, 1_000_000)


