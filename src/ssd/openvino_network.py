"""The exported network run by OpenVINO on the CPU (``--backend openvino``).

OpenVINO compiles ``ssd export``'s ONNX file (float32, or the INT8 file with its int8 kernels) for
the CPU it runs on. ``--backend auto`` picks it for an export on the CPU when it is installed: of the
CPU engines measured it was the fastest in float32, with PyTorch's detections (docs/performance.md).
Its CPU plugin would run in bfloat16 on processors with AVX-512 BF16 or AMX unless told otherwise, so
the inference precision is pinned to float32: a faster, less exact mode is a choice to measure, not a
default (``--precision bf16``, refused on a CPU without native bfloat16, where OpenVINO would quietly
run float32 instead). The compiled model's precision is read back and must be the one asked for.

A process holds one OpenVINO ``Core`` (:func:`openvino_core`), never one per network: each Core
loads its own CPU plugin, and the plugin (OpenVINO 2026.4) gives the thread that loads it a new
signal stack, handing the previous one back when it is destroyed only if its own is still current.
Two plugins destroyed in the order they were made therefore leave the thread on an unmapped
signal stack, and the next Python signal handler to run there (Ctrl-C's, the data loader's
SIGCHLD) kills the process with SIGSEGV and no traceback.
"""
from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ssd.errors import parameter
from ssd.onnx_export import ExportedNetwork, OnnxError, read_metadata

logger = logging.getLogger(__name__)

INSTALL = "pip install 'ssd[openvino]' (or: pip install openvino)"
INFERENCE_PRECISION = {"fp32": "f32", "bf16": "bf16"}  # --precision -> OpenVINO's INFERENCE_PRECISION_HINT


@functools.cache
def openvino_core() -> Any:
    """The process's one ``openvino.Core``, kept until exit (module docstring: why not one per network)."""
    import openvino

    return openvino.Core()


def cpu_capabilities() -> list[str]:
    """OpenVINO's optimization capabilities of this CPU (``"BF16"`` among them on native bfloat16)."""
    return list(openvino_core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


class OpenVinoNetwork(ExportedNetwork):
    """An OpenVINO-compiled ``ssd export`` model behaving like the network, on the CPU."""

    def __init__(self, path: str | Path, device: str | None = None, precision: str = "fp32"):
        if device not in (None, "cpu"):
            raise OnnxError(f"{parameter('device')} {device}: the OpenVINO backend runs on the CPU here")
        if precision not in INFERENCE_PRECISION:
            raise OnnxError(f"{parameter('precision')} {precision}: OpenVINO runs {' or '.join(INFERENCE_PRECISION)} here")
        try:
            import openvino
        except ImportError:
            raise OnnxError(f"{parameter('backend')} openvino needs OpenVINO: {INSTALL}") from None

        self.path = self._existing(path)
        capabilities = cpu_capabilities()
        if precision == "bf16" and "BF16" not in capabilities:
            raise OnnxError(f"{parameter('precision')} bf16: this CPU has no native bfloat16 (OpenVINO's CPU capabilities: {', '.join(capabilities)}); "
                            "it needs AVX-512 BF16 or AMX")
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION[precision]}
        try:
            self.compiled = openvino_core().compile_model(str(self.path), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError and its own types for unreadable models
            raise OnnxError(f"{self.path}: OpenVINO cannot load the model: {exc}") from exc
        compiled_precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # a Type: 'f32', 'bf16'
        if compiled_precision != INFERENCE_PRECISION[precision]:
            raise OnnxError(f"{parameter('precision')} {precision}: OpenVINO compiled {self.path.name} for {compiled_precision} instead "
                            f"(CPU capabilities: {', '.join(capabilities)})")
        self.device = "cpu"
        inputs, outputs = self.compiled.inputs, self.compiled.outputs
        self._check_io([i.get_any_name() for i in inputs], [o.get_any_name() for o in outputs])
        shape = inputs[0].get_partial_shape()
        self.input_shape = [d.get_length() if d.is_static else "batch" for d in shape]
        confs = outputs[1].get_partial_shape()
        self.num_classes, self.num_anchors = confs[1].get_length(), confs[2].get_length()
        self.metadata = read_metadata(self.path)
        self._request = self.compiled.create_infer_request()
        self.precision = precision
        logger.info("%s runs on OpenVINO %s (CPU, %s)", self.path.name, openvino.__version__, precision)

    def _run(self, images: Tensor) -> tuple[Tensor, Tensor]:
        batch = np.ascontiguousarray(images.detach().to(device="cpu", dtype=torch.float32).numpy())
        results = self._request.infer({0: batch})
        locs, confs = (torch.from_numpy(np.array(results[output])) for output in self.compiled.outputs)
        return locs, confs
