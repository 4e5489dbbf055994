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
