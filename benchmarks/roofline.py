"""How close to this CPU's limit a forward pass runs: the model's work per frame, the attainable peak of
the same machine for a precision and an engine, and the CPU's capabilities.

The work is the model's multiply-adds (``ssd summary``'s count, on the meta device) x 2 FLOP. The peak
is measured, not read from a data sheet: the convolution that carries most of the model's work (its
shape as the model runs it: channels, kernel, stride and input size), alone in a network shaped like an
export (``images [1, 3, H, W] -> (locs, confs)``: a 1x1 lift to its input channels first), run by the
engine's own library in its precision: PyTorch (oneDNN, channels-last, ``inference_mode``), ONNX Runtime
or OpenVINO on its ONNX export, INT8 through the same quantizer as ``ssd export --int8``. A matrix
product (``torch.matmul``, 2048^3) is measured beside it for comparison. The figures:
``model GFLOP/s = work / latency`` and ``% of peak = model GFLOP/s / probe GFLOP/s``.

    .venv/bin/python benchmarks/roofline.py [--config baseline_8MP_ss_scales_fm1_5x5_all] [--engines torch-fp32 openvino-fp32 ...]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

CAPABILITY_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx_vnni", "amx_bf16", "amx_int8")
PROBES = ("torch-fp32", "torch-bf16", "onnxruntime-fp32", "onnxruntime-int8", "openvino-fp32", "openvino-bf16", "openvino-int8")


@dataclass(frozen=True)
class ConvShape:
    """One convolution as the model runs it, and the multiply-adds of all its runs of that shape."""

    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    groups: int
    input_size: tuple[int, int]  # H, W

    @property
    def mult_adds(self) -> int:
        """Multiply-adds of one run on one image."""
        height = (self.input_size[0] + 2 * self.padding[0] - self.kernel[0]) // self.stride[0] + 1
        width = (self.input_size[1] + 2 * self.padding[1] - self.kernel[1]) // self.stride[1] + 1
        return self.out_channels * height * width * (self.in_channels // self.groups) * self.kernel[0] * self.kernel[1]

    def __str__(self) -> str:
        return (f"{self.kernel[0]}x{self.kernel[1]} conv {self.in_channels}->{self.out_channels}, stride {self.stride[0]}, "
                f"input {self.input_size[0]}x{self.input_size[1]}" + (f", {self.groups} groups" if self.groups > 1 else ""))


def cpu_capabilities() -> str:
    """The CPU's name, the cores this process may use, and its vector and matrix extensions."""
    from ssd.device import cpu_flags

    name = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        name = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")), name)
    flags = cpu_flags()
    present = [flag for flag in CAPABILITY_FLAGS if flag in flags]
    return f"{name}; {len(os.sched_getaffinity(0))} cores; {' '.join(present) or 'none of ' + ' '.join(CAPABILITY_FLAGS)}"


def model_flops(config_name: str, num_classes: int, batch_size: int = 1) -> float:
    """FLOP of one forward pass of the config's model (``num_classes`` with background) on ``batch_size`` images
    (2 x multiply-adds). A training step is counted as three forward passes (the backward pass computes
    two products per forward one: the gradients of the inputs and of the weights)."""
    from ssd.config import load_config
    from ssd.summary import summarize

    return 2.0 * summarize(load_config(config_name), num_classes=num_classes, batch_size=batch_size).mult_adds


def dominant_conv(config_name: str, num_classes: int) -> tuple[ConvShape, float]:
    """The convolution shape that carries most of the model's multiply-adds, and its share of all convolutions'."""
    from ssd.config import load_config
    from ssd.models import build_model

    config = load_config(config_name)
    with torch.device("meta"):
        model = build_model(config, num_classes).eval()
    work: dict[ConvShape, int] = defaultdict(int)

    def record(module: nn.Conv2d, inputs: tuple[torch.Tensor, ...], _output: torch.Tensor) -> None:
        shape = ConvShape(module.in_channels, module.out_channels, tuple(module.kernel_size), tuple(module.stride),
                          tuple(module.padding), module.groups, tuple(inputs[0].shape[2:]))
        work[shape] += shape.mult_adds

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.empty(1, 3, *config.model.image_size, device="meta"))
    for hook in hooks:
        hook.remove()
    shape = max(work, key=work.__getitem__)
    return shape, work[shape] / sum(work.values())


class ConvProbe(nn.Module):
    """One convolution of ``shape`` behind a 1x1 lift from 3 channels, with an export's inputs and outputs."""

    def __init__(self, shape: ConvShape):
        super().__init__()
        if shape.out_channels < 8:
            raise ValueError(f"{shape}: the probe splits its output into two 4-channel heads")
        self.shape = shape
        self.lift = nn.Conv2d(3, shape.in_channels, 1)
        self.conv = nn.Conv2d(shape.in_channels, shape.out_channels, shape.kernel, shape.stride, shape.padding, groups=shape.groups)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        flat = self.conv(self.lift(images)).flatten(2)
        return flat[:, :4], flat[:, 4:8]

    @property
    def flops(self) -> float:
        """FLOP of one run (both convolutions)."""
        height, width = self.shape.input_size
        return 2.0 * (3 * self.shape.in_channels * height * width + self.shape.mult_adds)


def best_seconds(run: Callable[[], object], repeats: int = 5) -> float:
    """The best of ``repeats`` timed calls after one warm-up."""
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def probe_gflops(probe: str, shape: ConvShape, repeats: int = 5) -> float:
    """GFLOP/s of the :class:`ConvProbe` of ``shape`` run by ``probe`` (``library-precision``, one of :data:`PROBES`)."""
    library, precision = probe.split("-")
    torch.manual_seed(0)
    network = ConvProbe(shape).eval()
    images = torch.randn(1, 3, *shape.input_size)
    if library == "torch":
        network = network.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)

        def run() -> object:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                return network(images)

        return network.flops / best_seconds(run, repeats) / 1e9
    from ssd.onnx_export import OnnxNetwork, export_onnx
    from ssd.openvino_network import OpenVinoNetwork

    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(network, shape.input_size, Path(folder) / "probe.onnx")
        if precision == "int8":
            from ssd.quantize import quantize_onnx

            quantize_onnx(path, Path(folder) / "probe.int8.onnx", [images[0]])
            path = Path(folder) / "probe.int8.onnx"
        engine = OnnxNetwork(path, device="cpu") if library == "onnxruntime" else OpenVinoNetwork(path, precision="fp32" if precision == "int8" else precision)
        return network.flops / best_seconds(lambda: engine(images), repeats) / 1e9


def gemm_gflops(precision: str, size: int = 2048, repeats: int = 5) -> float:
    """GFLOP/s of a ``size``^3 ``torch.matmul`` in ``precision`` (fp32 or bf16)."""
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    return 2.0 * size**3 / best_seconds(lambda: torch.matmul(a, b), repeats) / 1e9


def peaks(config_name: str, num_classes: int, probes: Sequence[str], gemm: bool = True) -> dict[str, float]:
    """Each of ``probes``' GFLOP/s on the config's dominant convolution, printed (with the GEMM figures of their precisions)."""
    shape, share = dominant_conv(config_name, num_classes)
    print(f"{config_name} peak probe: {shape} ({share:.0%} of the model's convolution work)", flush=True)
    found = {}
    for probe in probes:
        found[probe] = probe_gflops(probe, shape)
        print(f"peak {probe:<17} {found[probe]:8.1f} GFLOP/s", flush=True)
    for precision in sorted({p.split("-")[1] for p in probes} & {"fp32", "bf16"}) if gemm else ():
        print(f"GEMM torch-{precision:<11} {gemm_gflops(precision):8.1f} GFLOP/s (2048^3 matmul, for comparison)", flush=True)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="baseline_8MP_ss_scales_fm1_5x5_all")
    parser.add_argument("--num-classes", type=int, default=15)
    parser.add_argument("--probes", nargs="+", choices=PROBES, default=["torch-fp32", "openvino-fp32", "openvino-int8"])
    args = parser.parse_args()
    print(f"CPU: {cpu_capabilities()}", flush=True)
    print(f"model: {model_flops(args.config, args.num_classes) / 1e12:.2f} TFLOP per frame ({args.config}, {args.num_classes} classes)")
    peaks(args.config, args.num_classes, args.probes)


if __name__ == "__main__":
    main()
