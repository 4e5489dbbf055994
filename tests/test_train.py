"""Training: the seed's command, two gloo processes, resume, crash-safe checkpoints, the recipe."""
from __future__ import annotations

import copy
import csv
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

from ssd.amp import MixedPrecision
from ssd.checkpoint import atomic_save, read_checkpoint
from ssd.config import load_config
from ssd.data import build_dataset
from ssd.data.synth import synth_cognata
from ssd.heap_retention import no_step_hook
from ssd.engine.schedule import WarmupMultiStep, build_optimizer, load_optimizer_state, scaled_learning_rate
from ssd.engine.train import NonFiniteLossError, TrainingStep, train_one_epoch
from ssd.loss import MultiBoxLoss
from ssd.matching import TargetEncoder
from ssd.anchors import default_boxes
from ssd.models import build_model
from ssd.models.checkpointing import set_activation_checkpointing

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAIN = ["--batch-size", "2", "--num-workers", "0", "--device", "cpu", "--no-progress", "--lr", "0.01"]


@pytest.fixture(scope="module")
def cognata(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cognata")
    synth_cognata(root, 20, size=(64, 128), seed=3, objects=(1, 3))
    return root


@pytest.fixture
def config_path(tiny_config_path: Path) -> Path:
    return tiny_config_path


def _run(args: list[str], timeout: int = 240, env_extra: dict | None = None) -> None:
    """Run ``args`` in ROOT to a zero exit (forked with torch imported; a launcher's workers are new interpreters)."""
    done = forked.run(args, ROOT, {**os.environ, "OMP_NUM_THREADS": "1", **(env_extra or {})}, timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def _metrics(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def _evaluated_map(checkpoint: Path, data: Path, config: Path, tmp_path: Path, *flags: str) -> float:
    """mAP of ``ssd evaluate`` (one process, the dataset's decoding, COCO thresholds) as metrics.csv rounds it."""
    from ssd.cli.main import main

    output = tmp_path / "evaluated"
    argv = ["evaluate", "--dataset", "cognata", "--data-path", str(data), "--config", str(config), "--pretrained-model", str(checkpoint),
            "--device", "cpu", "--num-workers", "0", "--batch-size", "2", "--output-dir", str(output), *flags]
    assert main(argv) == 0
    return float(f"{json.loads((output / 'metrics.json').read_text())['stats'][0]:.6g}")


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
    (row,) = _metrics(out)
    assert float(row["loss"]) > 0 and float(row["mAP"]) == _evaluated_map(out / "last.pth", cognata, config_path, tmp_path, "--no-channels-last")


@pytest.mark.slow
def test_two_gloo_processes_gather_the_whole_validation_set(tmp_path, cognata, config_path):
    out = tmp_path / "out"
    _run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517", "train.py",
          "--dataset", "cognata", "--data-path", str(cognata), "--save-folder", str(out), "--config", str(config_path),
          "--epochs", "1", *TINY_TRAIN])
    (row,) = _metrics(out)
    val_set = build_dataset("cognata", cognata, "val", load_config(config_path))
    assert int(row["images_evaluated"]) == len(val_set) and len(val_set) > 2
    assert torch.isfinite(torch.tensor([float(row["loss"]), float(row["loss_localisation"])])).all()
    # the two ranks' halves, gathered, score as one process scoring the whole set
    assert float(row["mAP"]) == _evaluated_map(out / "last.pth", cognata, config_path, tmp_path)
    checkpoint = read_checkpoint(out / "last.pth")
    assert len(checkpoint["rng"]) == 2  # each rank's random state


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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


@pytest.mark.slow
def test_two_torchrun_nodes_train_evaluate_checkpoint_and_resume_without_shared_storage(tmp_path, cognata, config_path):
    """Two "nodes" (c10d rendezvous on 127.0.0.1), each with its own save folder as on machines
    without shared storage: one checkpoint (on rank 0's node), evaluation gathered from both ranks,
    and a resume where the node without the checkpoint has become rank 0 (fixed with a static
    rendezvous) ends as the uninterrupted two-node run does, bitwise."""
    train_args = ["--dataset", "cognata", "--data-path", str(cognata), "--config", str(config_path), "--multistep", "1", *TINY_TRAIN]
    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id", "straight"]
    straight = [tmp_path / "straight_a", tmp_path / "straight_b"]
    _two_nodes([rendezvous, rendezvous], straight, [*train_args, "--epochs", "2"])
    rendezvous = ["--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{_free_port()}", "--rdzv-id", "first"]
    resumed = [tmp_path / "resumed_a", tmp_path / "resumed_b"]
    _two_nodes([rendezvous, rendezvous], resumed, [*train_args, "--epochs", "1"])

    (holder,) = [folder for folder in resumed if (folder / "last.pth").is_file()]  # rank 0's node only
    (row,) = _metrics(holder)
    assert not [path for folder in resumed if folder != holder for path in folder.glob("*.pth")]
    val_set = build_dataset("cognata", cognata, "val", load_config(config_path))
    assert int(row["images_evaluated"]) == len(val_set) and len(val_set) > 2
    assert float(row["mAP"]) == _evaluated_map(holder / "last.pth", cognata, config_path, tmp_path)
    assert len(read_checkpoint(holder / "last.pth")["rng"]) == 2

    empty = next(folder for folder in resumed if folder != holder)
    port = str(_free_port())
    static = [["--node-rank", str(rank), "--master-addr", "127.0.0.1", "--master-port", port] for rank in (0, 1)]
    _two_nodes(static, [empty, holder], [*train_args, "--epochs", "2"])  # the node without it is rank 0 now

    (finished,) = [folder for folder in straight if (folder / "last.pth").is_file()]
    expected, got = read_checkpoint(finished / "last.pth"), read_checkpoint(empty / "last.pth")
    assert got["epoch"] == expected["epoch"] == 1
    assert read_checkpoint(holder / "last.pth")["epoch"] == 0  # rank 1 writes nothing
    assert [(r["epoch"], r["loss"], r["mAP"]) for r in _metrics(empty)] == [(r["epoch"], r["loss"], r["mAP"]) for r in _metrics(finished)]
    for key, value in expected["model_state_dict"].items():
        assert torch.equal(value, got["model_state_dict"][key]), key


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
    assert [r["epoch"] for r in _metrics(tmp_path / "killed")] == ["0"]
    _kill_during_second_epoch(killed, tmp_path / "killed", 5.0)  # again, later: start-up, training or evaluation
    _run([*common, "--save-folder", str(tmp_path / "killed"), "--epochs", "2"])
    assert not list((tmp_path / "killed").glob(".*.tmp"))
    straight = read_checkpoint(tmp_path / "straight" / "last.pth")
    assert straight["epoch"] == 1
    for name in ("resumed", "killed"):
        other = read_checkpoint(tmp_path / name / "last.pth")
        assert other["epoch"] == 1 and other["scheduler"]["last_epoch"] == straight["scheduler"]["last_epoch"] > 0
        rows, straight_rows = _metrics(tmp_path / name), _metrics(tmp_path / "straight")
        assert [r["epoch"] for r in rows] == ["0", "1"]
        assert [(r["loss"], r["mAP"]) for r in rows] == [(r["loss"], r["mAP"]) for r in straight_rows], name
        for key, value in straight["model_state_dict"].items():
            assert torch.equal(value, other["model_state_dict"][key]), (name, key)
    lrs = [float(r["lr"]) for r in _metrics(tmp_path / "resumed")]
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


ONE_BOX = [{"boxes": torch.tensor([[0.1, 0.1, 0.5, 0.5]]), "labels": torch.tensor([1])}] * 2


def _train_epoch(model, config, loader, epoch: int = 0, precision: str = "fp32", channels_last: bool = False, after_step=no_step_hook):
    """One ``train_one_epoch`` of ``model`` over ``loader`` with plain SGD on the CPU."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    cpu = torch.device("cpu")
    step = TrainingStep(model, TargetEncoder(default_boxes(config)), optimizer, MixedPrecision(cpu, precision), cpu, scheduler,
                        MultiBoxLoss(), channels_last=channels_last)
    return train_one_epoch(step, loader, epoch, show_progress=False, after_step=after_step)


def test_non_finite_loss_stops_naming_the_step(tiny_config):
    model = build_model(tiny_config, 3)
    for param in model.conf.parameters():
        param.data.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="epoch 3 step 0"):
        _train_epoch(model, tiny_config, [(torch.randn(2, 3, 64, 128), ONE_BOX)], epoch=3)


def test_non_finite_loss_found_one_step_late_names_its_own_step(tiny_config):
    images = [torch.randn(2, 3, 64, 128), torch.full((2, 3, 64, 128), float("nan")), torch.randn(2, 3, 64, 128)]
    with pytest.raises(NonFiniteLossError, match="epoch 0 step 1 "):
        _train_epoch(build_model(tiny_config, 3), tiny_config, [(batch, ONE_BOX) for batch in images])


def test_each_step_calls_the_after_step_hook(tiny_config):
    steps = []
    _train_epoch(build_model(tiny_config, 3), tiny_config, [(torch.randn(2, 3, 64, 128), ONE_BOX)] * 3, after_step=lambda: steps.append(1))
    assert len(steps) == 3


def test_bf16_autocast_step_on_cpu(tiny_config):
    model = build_model(tiny_config, 3)
    before = model.conf[0].weight.detach().clone()
    stats = _train_epoch(model, tiny_config, [(torch.randn(2, 3, 64, 128), ONE_BOX)], precision="amp")
    assert stats.images == 2 and torch.isfinite(torch.tensor(stats.loss))
    assert not torch.equal(before, model.conf[0].weight)


@pytest.mark.slow
def test_compiled_checkpointed_training_step_equals_the_eager_plain_one(tiny_config):
    """``--compile`` with ``--activation-checkpointing all`` and channels-last, through the training loop's own
    step, on SSD-ResNet50 (the 8 MP network): the eager model without checkpointing's loss, gradients, BatchNorm
    statistics (moved once, not twice) and updated weights. One compile (most of a minute) checks all of it, in
    float64: BatchNorm over the tiny config's 2x2 maps amplifies the summation order of compiled kernels (a few
    percent of some float32 gradients), not the rounding of float64."""
    images = torch.randn(2, 3, 64, 128, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    models, losses = [], []
    for mode, compiled in (("off", False), ("all", True)):
        torch.manual_seed(0)
        model = build_model(tiny_config, 3).double().to(memory_format=torch.channels_last)
        set_activation_checkpointing(model, mode)
        losses.append(_train_epoch(torch.compile(model) if compiled else model, tiny_config, [(images, ONE_BOX)], channels_last=True).loss)
        models.append(model)
    plain, compiled_model = models
    assert losses[0] > 0 and losses[1] == pytest.approx(losses[0], rel=1e-12)
    for got, expected in zip(compiled_model.parameters(), plain.parameters()):
        torch.testing.assert_close(got.grad, expected.grad, rtol=1e-8, atol=1e-10)
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)  # updated by the same step
    for got, expected in zip(compiled_model.buffers(), plain.buffers()):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)  # moved once, not twice
    assert int(compiled_model.feature_extractor.feature_extractor[1].num_batches_tracked) == 1


def test_recipe():
    assert scaled_learning_rate(2.6e-3, 32, 8) == pytest.approx(2.6e-3 * 8)
    schedule = WarmupMultiStep([2, 3], iterations_per_epoch=10, warmup=4)
    assert schedule(0) == pytest.approx(1 / 5) and schedule(4) == 1.0
    assert schedule(19) == 1.0 and schedule(20) == pytest.approx(0.1) and schedule(35) == pytest.approx(0.01)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    optimizer = build_optimizer(model, 0.1, 0.9, 5e-4, no_decay_bn=True)
    decay, no_decay = optimizer.param_groups
    assert [p.shape for p in decay["params"]] == [torch.Size([4, 3, 3, 3])] and len(no_decay["params"]) == 3
    assert no_decay["weight_decay"] == 0.0 and optimizer.defaults["nesterov"]


TRAIN_ARGS = ["--batch-size", "2", "--num-workers", "0", "--device", "cpu", "--no-progress", "--epochs", "1"]


def test_save_folder_that_is_a_file_is_one_error_line(tmp_path, cognata, config_path, capsys):
    from ssd.cli.main import main

    (tmp_path / "taken").write_text("a file")
    assert main(["train", "--data-path", str(cognata), "--config", str(config_path), *TRAIN_ARGS, "--save-folder", str(tmp_path / "taken")]) == 2
    assert capsys.readouterr().err.strip() == f"error: --save-folder {tmp_path / 'taken'}: exists and is not a folder"


def test_resuming_a_checkpoint_of_another_config_is_an_error_naming_both(tmp_path, cognata, config_path, capsys):
    from ssd.cli.main import main

    folder = tmp_path / "run"
    folder.mkdir()
    weights = build_model(load_config(config_path), 15).state_dict()  # the same shapes, recorded with another config
    torch.save({"epoch": 0, "model_state_dict": weights, "config": {"name": "coco_300x300", "text": "model: {}"}}, folder / "last.pth")
    assert main(["train", "--data-path", str(cognata), "--config", str(config_path), *TRAIN_ARGS, "--save-folder", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"error: {folder / 'last.pth'}: trained with config 'coco_300x300', not 'tiny' (same tensor shapes, other geometry); "
                   "resume with that config, or train into another --save-folder"), err


def test_metrics_csv_keeps_one_row_per_finished_epoch_and_stale_temporaries_go(tmp_path, cognata, config_path, capsys):
    from ssd.cli.main import main

    folder = tmp_path / "run"
    argv = ["train", "--data-path", str(cognata), "--config", str(config_path), *TRAIN_ARGS, "--save-folder", str(folder)]
    assert main(argv) == 0
    (first_row,) = _metrics(folder)
    header = (folder / "metrics.csv").read_text().splitlines()[0]
    # killed after last.pth was committed, before the row was written, and while a checkpoint was being written
    (folder / "metrics.csv").write_text(header + "\n")
    (folder / ".SSD_ep1.pth.999999999.tmp").write_bytes(b"half a checkpoint")
    assert main([*argv, "--epochs", "2"]) == 0
    rows = _metrics(folder)
    assert [row["epoch"] for row in rows] == ["0", "1"] and rows[0] == first_row
    assert not list(folder.glob(".*.tmp"))
    # the same row twice (an older version, a copied file): the rerun keeps one
    with open(folder / "metrics.csv", "a") as handle:
        handle.write((folder / "metrics.csv").read_text().splitlines()[-1] + "\n")
    assert main([*argv, "--epochs", "2"]) == 0
    assert [row["epoch"] for row in _metrics(folder)] == ["0", "1"]


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_fused_optimizers_update_as_the_unfused_ones(name):
    """The trainer fuses on CUDA (the scaler's overflow flag stays on the device); same numbers."""
    updated = []
    for fused in (False, True):
        torch.manual_seed(0)
        # no bias before the BatchNorm (as in the SSD networks): its gradient is rounding noise, which Adam amplifies
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, bias=False), torch.nn.BatchNorm2d(8), torch.nn.Flatten(), torch.nn.LazyLinear(4))
        model(torch.zeros(1, 3, 8, 8))
        optimizer = build_optimizer(model, 0.05, 0.9, 5e-4, no_decay_bn=True, name=name, fused=fused)
        assert optimizer.defaults["fused"] is fused
        generator = torch.Generator().manual_seed(1)
        for _ in range(5):
            optimizer.zero_grad()
            model(torch.randn(4, 3, 8, 8, generator=generator)).square().mean().backward()
            optimizer.step()
        updated.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(*updated))


@pytest.mark.parametrize("name", ["sgd", "adamw"])
@pytest.mark.parametrize("saved_fused", [False, True])
def test_a_resumed_optimizer_keeps_this_runs_fusing_under_the_scaler(name, saved_fused):
    """A CPU run's (unfused) optimizer state resumed by a CUDA run (fused), and the other way round:
    the loaded state keeps this run's implementation, and the scaled step updates as the saved optimizer would."""
    def model_and_optimizer(fused: bool):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, bias=False), torch.nn.BatchNorm2d(4))
        return model, build_optimizer(model, 0.05, 0.9, 5e-4, no_decay_bn=True, name=name, fused=fused)

    def scaled_step(model, optimizer, scaler, seed: int) -> None:
        optimizer.zero_grad()
        scaler.scale(model(torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(seed))).square().mean()).backward()
        scaler.step(optimizer)
        scaler.update()

    saved_model, saved_optimizer = model_and_optimizer(saved_fused)
    saved_scaler = torch.amp.GradScaler("cpu", init_scale=256.0)
    scaled_step(saved_model, saved_optimizer, saved_scaler, 1)
    model, optimizer = model_and_optimizer(not saved_fused)
    model.load_state_dict(saved_model.state_dict())
    load_optimizer_state(optimizer, copy.deepcopy(saved_optimizer.state_dict()))  # as read from a file: no shared buffers
    assert [group["fused"] for group in optimizer.param_groups] == [not saved_fused] * 2
    assert [group["lr"] for group in optimizer.param_groups] == [group["lr"] for group in saved_optimizer.param_groups]
    scaler = torch.amp.GradScaler("cpu")
    scaler.load_state_dict(saved_scaler.state_dict())
    scaled_step(model, optimizer, scaler, 2)  # with the file's flag, a fused optimizer's unfused step failed an assertion
    scaled_step(saved_model, saved_optimizer, saved_scaler, 2)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(model.parameters(), saved_model.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(model.parameters(), model_and_optimizer(False)[0].parameters()))


def test_resuming_with_other_optimizer_flags_is_an_error_naming_both(tmp_path, cognata, config_path, capsys):
    from ssd.cli.main import main

    folder = tmp_path / "run"
    folder.mkdir()
    weights = build_model(load_config(config_path), 15).state_dict()
    torch.save({"epoch": 0, "model_state_dict": weights, "options": {"optimizer": "sgd", "no_decay_bn": False}}, folder / "last.pth")
    argv = ["train", "--data-path", str(cognata), "--config", str(config_path), *TRAIN_ARGS, "--save-folder", str(folder)]
    for extra, ours in ((["--optimizer", "adamw"], "--optimizer adamw"), (["--no-decay-bn"], "--optimizer sgd --no-decay-bn")):
        assert main([*argv, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err == (f"error: {folder / 'last.pth'}: trained with --optimizer sgd, this run has {ours}; "
                       "resume with the checkpoint's optimizer settings, or train into another --save-folder"), err
