"""Device policies: cuDNN's algorithm search on CUDA only and its command-line switch; where LoadGen samples are staged."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ssd.cli.main import build_parser
from ssd.cli.train import train_options
from ssd.device import configure_cudnn, stage_on_device


@pytest.fixture
def cudnn_flag():
    before = torch.backends.cudnn.benchmark
    yield
    torch.backends.cudnn.benchmark = before


def test_cudnn_benchmark_is_set_on_cuda_only(cudnn_flag):
    torch.backends.cudnn.benchmark = False
    configure_cudnn(torch.device("cpu"), True)
    assert torch.backends.cudnn.benchmark is False
    configure_cudnn(SimpleNamespace(type="cuda"), True)
    assert torch.backends.cudnn.benchmark is True
    configure_cudnn(SimpleNamespace(type="cuda"), False)
    assert torch.backends.cudnn.benchmark is False


@pytest.mark.parametrize(("flags", "expected"), [([], True), (["--no-cudnn-benchmark"], False)])
def test_the_commands_take_the_switch(flags, expected):
    parser = build_parser()
    assert train_options(parser.parse_args(["train", *flags])).cudnn_benchmark is expected
    for command in (["evaluate"], ["predict", "--input", "x.png"], ["loadgen", "--config", "c", "--pretrained-model", "m", "--data-path", "d"]):
        assert parser.parse_args([*command, *flags]).cudnn_benchmark is expected


class FakeSample:
    """Stands for a CPU tensor on a machine with a GPU that holds the sample or is full."""

    def __init__(self, gpu_has_room: bool):
        self.gpu_has_room = gpu_has_room

    def to(self, device):
        if not self.gpu_has_room:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 95.00 MiB")
        return ("on", device)

    def pin_memory(self):
        return "pinned"


def test_samples_are_staged_on_the_gpu_else_in_pinned_memory_and_left_alone_on_the_cpu():
    sample = torch.zeros(3, 4, 4)
    assert stage_on_device(sample, torch.device("cpu")) is sample  # no copy on the CPU
    cuda = torch.device("cuda", 0)
    assert stage_on_device(FakeSample(gpu_has_room=True), cuda) == ("on", cuda)
    assert stage_on_device(FakeSample(gpu_has_room=False), cuda) == "pinned"
