"""The roofline's arithmetic (``benchmarks/roofline.py``): work counted as PyTorch's own FLOP counter counts it."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from roofline import ConvProbe, ConvShape, dominant_conv, model_flops  # noqa: E402


def counted_flops(module: torch.nn.Module, images: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(images)
    return counter.get_total_flops()


@pytest.mark.parametrize("shape", [
    ConvShape(16, 32, (3, 3), (1, 1), (1, 1), 1, (20, 30)),
    ConvShape(16, 32, (3, 3), (2, 2), (1, 1), 1, (21, 31)),  # odd sizes, stride 2
    ConvShape(32, 32, (3, 3), (1, 1), (1, 1), 32, (12, 12)),  # depthwise
    ConvShape(8, 24, (1, 1), (1, 1), (0, 0), 1, (5, 7)),
])
def test_a_probe_counts_its_work_as_pytorch_does(shape):
    probe = ConvProbe(shape).eval()
    assert counted_flops(probe, torch.zeros(1, 3, *shape.input_size)) == probe.flops
    assert counted_flops(probe.conv, torch.zeros(1, shape.in_channels, *shape.input_size)) == 2 * shape.mult_adds


def test_the_dominant_convolution_and_its_share_of_the_models_convolution_work():
    from ssd.config import load_config
    from ssd.models import build_model

    config = load_config("demo_ssdlite_160")
    shape, share = dominant_conv("demo_ssdlite_160", 3)
    torch.manual_seed(0)
    total = counted_flops(build_model(config, 3).eval(), torch.zeros(1, 3, *config.model.image_size))  # every convolution's
    runs = share * total / (2 * shape.mult_adds)  # how often the model runs that shape
    assert 0 < share < 1 and runs == pytest.approx(round(runs)) and round(runs) >= 1
    assert model_flops("demo_ssdlite_160", 3) >= total  # the summary's count has the convolutions and more
    assert model_flops("demo_ssdlite_160", 3, batch_size=2) == pytest.approx(2 * model_flops("demo_ssdlite_160", 3))
