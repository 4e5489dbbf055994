"""Training's steps and recipe: the step and the epoch loop, the bf16 step, optimisers, the errors a training
command gives before it runs (the compiled step: test_compiled_training.py; whole runs: test_train_runs.py)."""
from __future__ import annotations

import copy

import pytest
import torch

from support import ONE_BOX, metrics_rows, train_epoch

from ssd.config import load_config
from ssd.engine.schedule import WarmupMultiStep, build_optimizer, load_optimizer_state, scaled_learning_rate
from ssd.engine.train import NonFiniteLossError
from ssd.models import build_model


def test_non_finite_loss_stops_naming_the_step(tiny_config):
    model = build_model(tiny_config, 3)
    for param in model.conf.parameters():
        param.data.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match="epoch 3 step 0"):
        train_epoch(model, tiny_config, [(torch.randn(2, 3, 64, 128), ONE_BOX)], epoch=3)


def test_non_finite_loss_found_one_step_late_names_its_own_step(tiny_config):
    images = [torch.randn(2, 3, 64, 128), torch.full((2, 3, 64, 128), float("nan")), torch.randn(2, 3, 64, 128)]
    with pytest.raises(NonFiniteLossError, match="epoch 0 step 1 "):
        train_epoch(build_model(tiny_config, 3), tiny_config, [(batch, ONE_BOX) for batch in images])


def test_each_step_calls_the_after_step_hook(tiny_config):
    steps = []
    train_epoch(build_model(tiny_config, 3), tiny_config, [(torch.randn(2, 3, 64, 128), ONE_BOX)] * 3, after_step=lambda: steps.append(1))
    assert len(steps) == 3


def test_bf16_autocast_step_on_cpu(tiny_config):
    model = build_model(tiny_config, 3)
    before = model.conf[0].weight.detach().clone()
    stats = train_epoch(model, tiny_config, [(torch.randn(2, 3, 64, 128), ONE_BOX)], precision="amp")
    assert stats.images == 2 and torch.isfinite(torch.tensor(stats.loss))
    assert not torch.equal(before, model.conf[0].weight)


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
    (first_row,) = metrics_rows(folder)
    header = (folder / "metrics.csv").read_text().splitlines()[0]
    # killed after last.pth was committed, before the row was written, and while a checkpoint was being written
    (folder / "metrics.csv").write_text(header + "\n")
    (folder / ".SSD_ep1.pth.999999999.tmp").write_bytes(b"half a checkpoint")
    assert main([*argv, "--epochs", "2"]) == 0
    rows = metrics_rows(folder)
    assert [row["epoch"] for row in rows] == ["0", "1"] and rows[0] == first_row
    assert not list(folder.glob(".*.tmp"))
    # the same row twice (an older version, a copied file): the rerun keeps one
    with open(folder / "metrics.csv", "a") as handle:
        handle.write((folder / "metrics.csv").read_text().splitlines()[-1] + "\n")
    assert main([*argv, "--epochs", "2"]) == 0
    assert [row["epoch"] for row in metrics_rows(folder)] == ["0", "1"]


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
