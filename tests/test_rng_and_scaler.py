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
    precision = MixedPrecision(torch.device("cpu"), "amp")
    precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)  # the fp16 scaler of a CUDA run
    precision.load_scaler_state({})  # what a run in fp32 or bf16 saved
    assert precision.scaler.get_scale() == 2.0**10
    trained = torch.amp.GradScaler("cpu", init_scale=2.0**7)
    precision.load_scaler_state(trained.state_dict())
    assert precision.scaler.get_scale() == 2.0**7
    with pytest.raises(RuntimeError):  # what the resume did before
        torch.amp.GradScaler("cpu").load_state_dict({})


# -- the fp16 gradient scaler's path, as on CUDA, on the CPU -----------------------------------------
def _fp16_precision(init_scale: float) -> MixedPrecision:
    precision = MixedPrecision(torch.device("cpu"), "fp16")
    precision.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale, growth_interval=1000)
    return precision


def _one_step(model: torch.nn.Module, optimizer, precision: MixedPrecision, inputs: torch.Tensor) -> None:
    with precision.autocast():
        loss = model(inputs).float().square().mean()
    optimizer.zero_grad(set_to_none=True)
    precision.backward_and_step(loss, optimizer)


def test_amp_is_fp16_on_cuda_bf16_on_the_cpu_and_fp16_always_scales():
    from ssd.choices import PrecisionError, resolve_precision

    amp = MixedPrecision(torch.device("cpu"), "amp")
    assert amp.name == "bf16" and amp.dtype == torch.bfloat16 and not amp.scaler.is_enabled()
    assert resolve_precision("amp", "cuda") == "fp16" and resolve_precision("amp", "cpu") == "bf16"
    fp16 = MixedPrecision(torch.device("cpu"), "fp16")
    assert fp16.dtype == torch.float16 and fp16.scaler.is_enabled()
    fp32 = MixedPrecision(torch.device("cpu"))
    assert fp32.name == "fp32" and not fp32.enabled and not fp32.scaler.is_enabled()
    with fp32.autocast():
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(PrecisionError, match="precision fp8: expected one of fp32, bf16, fp16, amp"):
        MixedPrecision(torch.device("cpu"), "fp8")


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
    from support import ONE_BOX

    from ssd.anchors import default_boxes
    from ssd.engine.train import NonFiniteLossError, TrainingStep, train_one_epoch
    from ssd.loss import MultiBoxLoss
    from ssd.matching import TargetEncoder

    anchors = default_boxes(tiny_config)

    class PooledHeads(torch.nn.Module):
        """Every default box's offsets and scores from the images' mean colours: the step's whole path
        (targets, autocast, loss, the scaler's backward and step) without a backbone's cost in fp16 on a CPU."""

        def __init__(self, classes: int):
            super().__init__()
            self.classes = classes
            self.loc, self.conf = torch.nn.Linear(3, 4 * len(anchors)), torch.nn.Linear(3, classes * len(anchors))

        def forward(self, images):
            pooled = images.mean(dim=(2, 3))
            return self.loc(pooled).view(len(images), 4, -1), self.conf(pooled).view(len(images), self.classes, -1)

    model = PooledHeads(3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    batches = [torch.randn(2, 3, 64, 128), torch.full((2, 3, 64, 128), float("nan")), torch.randn(2, 3, 64, 128)]
    with pytest.raises(NonFiniteLossError, match="epoch 2 step 1 "):
        step = TrainingStep(model, TargetEncoder(anchors), optimizer, _fp16_precision(2.0**16), torch.device("cpu"),
                            scheduler, MultiBoxLoss())
        train_one_epoch(step, [(b, ONE_BOX) for b in batches], 2, show_progress=False)
