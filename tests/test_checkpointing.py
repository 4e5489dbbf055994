"""Activation checkpointing: the same losses, gradients and BatchNorm statistics as without, for
less memory, eager or compiled, with autocast, channels-last and DDP."""
from __future__ import annotations


import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ssd.cli.main import build_parser
from ssd.cli.train import train_options
from ssd.config import load_config
from ssd.models import build_model
from ssd.models.checkpointing import CheckpointingError, set_activation_checkpointing


def _model(config, mode: str, channels_last: bool = False) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(config, 4).train()
    set_activation_checkpointing(model, mode)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def _step(model: torch.nn.Module, images: torch.Tensor, autocast: bool = False) -> tuple[float, list[torch.Tensor], list[torch.Tensor], int, list[str]]:
    """One forward + backward: the loss, the gradients, the buffers after it, the bytes saved for backward and
    the parameters' names."""
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            locs, confs = model(images)
        loss = locs.float().square().mean() + confs.float().square().mean()
    loss.backward()
    return (loss.item(), [p.grad.clone() for p in model.parameters()], [b.clone() for b in model.buffers()], sum(saved),
            [name for name, _ in model.named_parameters()])


@pytest.fixture(scope="module", params=["tiny", "demo_ssdlite_160"])
def config(request, tmp_path_factory):
    if request.param == "tiny":
        from support import TINY_YAML

        path = tmp_path_factory.mktemp("config") / "tiny.yaml"
        path.write_text(TINY_YAML)
        return load_config(path)
    return load_config(request.param)


@pytest.mark.parametrize(("channels_last", "autocast"), [(False, False), (True, False), (True, True)])
def test_same_step_for_less_memory_and_batchnorm_statistics_moved_once(config, channels_last, autocast):
    images = torch.randn(2, 3, *config.model.image_size, generator=torch.Generator().manual_seed(1))
    plain = _step(_model(config, "off", channels_last), images, autocast)
    saved = {"off": plain[3]}
    for mode in ("backbone", "all"):
        loss, grads, buffers, saved[mode], _ = _step(_model(config, mode, channels_last), images, autocast)
        assert loss == plain[0], mode  # the same forward, bitwise
        for name, got, expected in zip(plain[4], grads, plain[1]):
            where = f"{mode}, {name}: NaN {int(got.isnan().sum())} checkpointed, {int(expected.isnan().sum())} plain"
            torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7, msg=lambda text: f"{where}\n{text}")
        assert all(torch.equal(got, expected) for got, expected in zip(buffers, plain[2])), mode  # running stats moved once
    assert saved["all"] < saved["backbone"] < saved["off"] / 3


def test_no_checkpointing_without_gradients(config):
    model = _model(config, "all").eval()
    images = torch.randn(1, 3, *config.model.image_size)
    with torch.no_grad():
        checkpointed = model(images)
    set_activation_checkpointing(model, "off")
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(checkpointed, model(images)))


def test_ddp_checkpointed_step_equals_the_plain_one(config, tmp_path):
    images = torch.randn(2, 3, *config.model.image_size, generator=torch.Generator().manual_seed(3))
    plain = _step(_model(config, "off"), images)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        model = _model(config, "all")
        loss, _, buffers, _, _ = _step(DistributedDataParallel(model), images)
        grads = [p.grad for p in model.parameters()]
    finally:
        dist.destroy_process_group()
    assert loss == plain[0]
    for got, expected in zip(grads, plain[1]):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert all(torch.equal(got, expected) for got, expected in zip(buffers, plain[2]))


def test_modes_are_checked_and_the_flag_reaches_the_options():
    model = build_model(load_config("demo_ssdlite_160"), 3)
    with pytest.raises(CheckpointingError, match="'some': expected one of off, backbone, all"):
        set_activation_checkpointing(model, "some")
    with pytest.raises(CheckpointingError, match="Linear does not support activation checkpointing"):
        set_activation_checkpointing(torch.nn.Linear(2, 2), "all")
    set_activation_checkpointing(torch.nn.Linear(2, 2), "off")  # a network without it trains as it is
    parser = build_parser()
    assert train_options(parser.parse_args(["train"])).activation_checkpointing == "off"
    assert train_options(parser.parse_args(["train", "--activation-checkpointing", "backbone"])).activation_checkpointing == "backbone"
    with pytest.raises(SystemExit):
        parser.parse_args(["train", "--activation-checkpointing", "everything"])
