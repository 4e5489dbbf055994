"""Resume state: random states of this process's CUDA device only, and a scaler restored only when saved."""
from __future__ import annotations

import pytest
import torch

from ssd.amp import MixedPrecision
from ssd.engine import rng


class FakeCuda:
    """Stands in for ``torch.cuda`` on a machine with ``count`` GPUs, this process on ``current``."""

    def __init__(self, count: int, current: int):
        self.states = [torch.full((16,), k, dtype=torch.uint8) for k in range(count)]
        self.current = current

    def is_available(self):
        return True

    def current_device(self):
        return self.current

    def get_rng_state(self):
        return self.states[self.current].clone()

    def set_rng_state(self, state):
        self.states[self.current] = state.clone()


@pytest.fixture
def fake_cuda(monkeypatch):
    def install(count: int, current: int) -> FakeCuda:
        fake = FakeCuda(count, current)
        for name in ("is_available", "current_device", "get_rng_state", "set_rng_state"):
            monkeypatch.setattr(torch.cuda, name, getattr(fake, name))
        return fake
    return install


def test_only_the_current_devices_state_is_saved_and_restored_on_fewer_gpus(fake_cuda):
    fake_cuda(8, 5)  # rank 5 of a machine with 8 GPUs
    saved = rng.rng_state()
    assert saved["cuda"] == bytes([5] * 16)
    fake = fake_cuda(1, 0)  # resumed where one GPU is visible
    rng.set_rng_state(saved)
    assert fake.states[0].tolist() == [5] * 16


@pytest.mark.parametrize(("count", "current", "expected"), [(4, 2, 12), (2, 3, None)])
def test_a_checkpoint_with_every_devices_state_restores_this_devices(fake_cuda, count, current, expected):
    saved = {**rng.rng_state(), "cuda": [bytes([10 + k] * 16) for k in range(count)]}
    fake = fake_cuda(4, current)
    before = fake.states[current].tolist()
    rng.set_rng_state(saved)  # an 8 -> 4 GPU resume must not fail
    assert fake.states[current].tolist() == ([expected] * 16 if expected is not None else before)


def test_a_checkpoint_saved_without_a_scaler_resumes_with_an_fp16_scaler():
    precision = MixedPrecision(torch.device("cpu"), enabled=True)
    precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)  # the fp16 scaler of a CUDA run
    precision.load_scaler_state({})  # what a run without --amp saved
    assert precision.scaler.get_scale() == 2.0**10
    trained = torch.amp.GradScaler("cpu", init_scale=2.0**7)
    precision.load_scaler_state(trained.state_dict())
    assert precision.scaler.get_scale() == 2.0**7
    with pytest.raises(RuntimeError):  # what the resume did before
        torch.amp.GradScaler("cpu").load_state_dict({})


# -- the fp16 gradient scaler's path, as on CUDA, on the CPU -----------------------------------------
def _fp16_precision(init_scale: float) -> MixedPrecision:
    precision = MixedPrecision(torch.device("cpu"), enabled=True, dtype="fp16")
    precision.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1000)
    return precision


def _one_step(model: torch.nn.Module, optimizer, precision: MixedPrecision, inputs: torch.Tensor) -> None:
    with precision.autocast():
        loss = model(inputs).float().square().mean()
    optimizer.zero_grad(set_to_none=True)
    precision.backward_and_step(loss, optimizer)


def test_fp16_is_the_cuda_default_bf16_the_cpus_and_fp16_always_scales():
    assert MixedPrecision(torch.device("cpu"), True).dtype == torch.bfloat16
    assert not MixedPrecision(torch.device("cpu"), True).scaler.is_enabled()
    fp16 = MixedPrecision(torch.device("cpu"), True, "fp16")
    assert fp16.dtype == torch.float16 and fp16.scaler.is_enabled()
    assert not MixedPrecision(torch.device("cpu"), False, "fp16").scaler.is_enabled()
    with pytest.raises(ValueError, match="amp dtype 'fp8'"):
        MixedPrecision(torch.device("cpu"), True, "fp8")


@pytest.mark.parametrize("fused", [False, True])
def test_an_overflowing_fp16_step_is_skipped_the_scale_backs_off_and_the_next_step_applies(fused):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 4))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, fused=fused)
    precision = _fp16_precision(init_scale=2.0**40)  # the fp16 backward overflows at this scale
    inputs = torch.randn(8, 16)
    before = [p.detach().clone() for p in model.parameters()]
    _one_step(model, optimizer, precision, inputs)
    assert precision.scaler.get_scale() == 2.0**39  # backed off by half
    assert all(torch.equal(b, p) for b, p in zip(before, model.parameters()))  # the step was skipped
    precision.scaler.update(2.0**8)  # a scale whose gradients fit in fp16
    _one_step(model, optimizer, precision, inputs)
    assert precision.scaler.get_scale() == 2.0**8
    assert not any(torch.equal(b, p) for b, p in zip(before, model.parameters()))  # applied
    saved = precision.scaler.state_dict()
    resumed = _fp16_precision(init_scale=2.0**16)
    resumed.load_scaler_state(saved)
    assert resumed.scaler.get_scale() == 2.0**8 and resumed.scaler.state_dict()["_growth_tracker"] == saved["_growth_tracker"] == 1


def test_under_the_fp16_scaler_a_non_finite_loss_is_still_reported_with_its_own_step(tiny_config):
    from test_train import ONE_BOX

    from ssd.anchors import default_boxes
    from ssd.engine.train import NonFiniteLossError, train_one_epoch
    from ssd.loss import MultiBoxLoss
    from ssd.matching import TargetEncoder
    from ssd.models import build_model

    model = build_model(tiny_config, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    batches = [torch.randn(2, 3, 64, 128), torch.full((2, 3, 64, 128), float("nan")), torch.randn(2, 3, 64, 128)]
    with pytest.raises(NonFiniteLossError, match="epoch 2 step 1 "):
        train_one_epoch(model, [(b, ONE_BOX) for b in batches], TargetEncoder(default_boxes(tiny_config)), MultiBoxLoss(), optimizer,
                        scheduler, _fp16_precision(2.0**16), torch.device("cpu"), 2, show_progress=False)
