"""Device policies: cuDNN's algorithm search on CUDA only, and its command-line switch."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from ssd.cli.main import build_parser
from ssd.cli.train import train_options
from ssd.device import configure_cudnn


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
