"""ONNX export of the network, and the exported network run by ONNX Runtime (OpenVINO: :mod:`ssd.openvino_network`).

The exported graph is the network alone, like MLPerf's ``ssd_resnet50.onnx``: input ``image
[N, 3, H, W]`` (normalised), outputs ``locs [N, 4, A]`` and ``confs [N, C, A]`` (raw logits);
decoding stays in :func:`ssd.decoding.postprocess`, shared with the PyTorch path. Export uses
PyTorch's default ``torch.export``-based exporter (``dynamo=True``; it works for both SSD variants
in torch 2.14). That exporter writes opset 18 and converts down when an older opset is asked for.
Class names and the config name travel in the model's metadata.
"""
from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ssd.errors import SSDError, parameter

logger = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAMES = ("locs", "confs")
CLASS_NAMES_KEY = "class_names"
PRECISION_KEY = "precision"  # "int8" in the file ssd export --int8 writes
# loggers of the exporter's passes: they log every rewrite at INFO and the opset down-conversion as a
# warning, which export_onnx checks and reports itself
EXPORTER_LOGGERS = ("torch.onnx", "onnxscript", "onnx_ir")


class OnnxError(SSDError):
    """An export that failed, or an ONNX file that cannot be run; the message names the file."""


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Raise the exporter's loggers to ERROR for the duration, then restore their levels."""
    loggers = [logging.getLogger(name) for name in EXPORTER_LOGGERS]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def export_onnx(
    model: nn.Module,
    image_size: tuple[int, int],
    path: str | Path,
    *,
    opset: int = 17,
    dynamic_batch: bool = False,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model`` (in eval mode) as one self-contained ONNX file for inputs of ``image_size`` (H, W).

    ``dynamic_batch`` leaves the batch dimension free (named ``batch``), else it is 1.
    ``metadata`` entries are stored as the model's metadata properties.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # torch.export specialises a dimension whose example size is 1, so a free batch is traced with 2
    example = torch.zeros(2 if dynamic_batch else 1, 3, *image_size, device=next(model.parameters()).device)
    dynamic_shapes = ({0: torch.export.Dim("batch")},) if dynamic_batch else None
    try:
        with _quiet_exporter():
            torch.onnx.export(
                model.eval(), (example,), str(path), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                opset_version=opset, dynamo=True, dynamic_shapes=dynamic_shapes, external_data=False, verbose=False,
            )
    except Exception as exc:  # the exporter raises many types (torch.export, onnxscript, IO)
        raise OnnxError(f"{path}: export failed: {exc}") from exc

    import onnx

    proto = onnx.load(str(path))
    written = next((entry.version for entry in proto.opset_import if entry.domain in ("", "ai.onnx")), None)
    if written != opset:
        logger.warning("%s: the exporter wrote opset %s (asked for %d)", path, written, opset)
    for key, value in (metadata or {}).items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """An ONNX file's metadata properties, without loading its weights (onnx raises for an unreadable file)."""
    import onnx

    return {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}


def is_int8(metadata: Mapping[str, str]) -> bool:
    """Whether an export's metadata marks it as ``ssd export --int8``'s calibrated INT8 file."""
    return metadata.get(PRECISION_KEY) == "int8"


def class_names_metadata(class_names: Sequence[str]) -> dict[str, str]:
    """The metadata entry that :class:`OnnxNetwork` reads class names back from."""
    return {CLASS_NAMES_KEY: json.dumps(list(class_names))}


class ExportedNetwork:
    """An exported model run by an inference engine, behaving like the network:
    ``images [N, 3, H, W] -> (locs, confs)`` tensors. Subclasses open the engine and fill
    ``input_shape``, ``num_classes``, ``num_anchors`` and ``metadata`` (then :meth:`_check_io`),
    and implement :meth:`_run` for one batch of the size the model takes."""

    path: Path
    device: str
    input_shape: list  # [N, 3, H, W]; N is a name when the batch is free
    num_classes: int
    num_anchors: int
    metadata: dict[str, str]
    precision: str = "fp32"  # what the engine computes in (a name of ssd.choices.PRECISIONS)

    @staticmethod
    def _existing(path: str | Path) -> Path:
        """``path`` when it is a readable ONNX model; checked here, before an engine sees it (OpenVINO
        would try its other front ends on a foreign file and print their logs, or C++ exception text)."""
        import onnx

        path = Path(path)
        if not path.is_file():
            raise OnnxError(f"ONNX model not found: {path}")
        try:
            onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # protobuf's DecodeError and others, whatever the bytes are
            raise OnnxError(f"{path}: not a readable ONNX model ({type(exc).__name__}): a truncated file, or not an export "
                            f"(a checkpoint is read by {parameter('pretrained_model')})") from exc
        return path

    def _check_io(self, inputs: Sequence[str], outputs: Sequence[str]) -> None:
        if list(inputs) != [INPUT_NAME] or list(outputs) != list(OUTPUT_NAMES):
            raise OnnxError(f"{self.path}: expected input {INPUT_NAME!r} and outputs {list(OUTPUT_NAMES)}, not an ssd export")

    @property
    def class_names(self) -> tuple[str, ...] | None:
        """The class names ``ssd export`` saved in the model, if any."""
        names = self.metadata.get(CLASS_NAMES_KEY)
        return tuple(json.loads(names)) if names else None

    def check_input_size(self, image_size: tuple[int, int]) -> None:
        """Raise :class:`OnnxError` unless the model takes ``image_size`` (H, W) inputs."""
        if tuple(self.input_shape[2:]) != tuple(image_size):
            raise OnnxError(f"{self.path}: model input is {self.input_shape[2]}x{self.input_shape[3]}, the config's {image_size[0]}x{image_size[1]}")

    def __call__(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``images [N, 3, H, W]`` (normalised) -> ``locs [N, 4, A]``, ``confs [N, C, A]`` float32 tensors."""
        fixed_batch = self.input_shape[0] if isinstance(self.input_shape[0], int) else None
        if fixed_batch == 1 and images.shape[0] > 1:  # exported without --dynamic-batch: one image per run
            parts = [self(image) for image in images.split(1)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        if fixed_batch is not None and images.shape[0] != fixed_batch:
            raise OnnxError(f"{self.path}: the model takes batches of {fixed_batch}, got {images.shape[0]} images")
        return self._run(images)

    def _run(self, images: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


class OnnxNetwork(ExportedNetwork):
    """An ONNX Runtime session behaving like the network (:class:`ExportedNetwork`).

    ``device``: ``cpu``, or ``cuda`` (ONNX Runtime's CUDA provider, which must then be installed and
    must load: a session that fell back to the CPU is an error rather than a silent slowdown); None:
    CUDA when the provider loads, else the CPU. :attr:`device` says where it runs. Inputs and outputs
    are bound in place (IO binding): the session reads the input tensor's memory on its device and
    writes into output tensors allocated there, so a CUDA session copies nothing through the host
    and its outputs stay on the GPU for decoding.
    """

    def __init__(self, path: str | Path, device: str | None = None, precision: str = "fp32"):
        import onnxruntime

        self.path = self._existing(path)
        if precision != "fp32":
            raise OnnxError(f"{self.path}: ONNX Runtime runs the export as stored (float32 or INT8); {parameter('precision')} {precision} is for "
                            f"the torch {parameter('backend')}, or openvino on a CPU with bfloat16")
        available = onnxruntime.get_available_providers()
        kind, colon, index = (device or "").partition(":")
        if device is not None and (kind not in ("cpu", "cuda") or (colon and not index.isdigit())):
            raise OnnxError(f"{parameter('device')} {device}: ONNX Runtime runs on cpu, cuda or cuda:N")
        wants_cuda = kind == "cuda"
        if wants_cuda and "CUDAExecutionProvider" not in available:
            raise OnnxError(f"{self.path}: {parameter('device')} {device} but this ONNX Runtime has no CUDA provider (install onnxruntime-gpu)")
        self.device_id = int(index) if wants_cuda and index else 0  # the CUDA device the session and its bindings use
        names = ("CPUExecutionProvider",) if kind == "cpu" else ("CUDAExecutionProvider", "CPUExecutionProvider")
        providers = [(p, {"device_id": self.device_id}) if p == "CUDAExecutionProvider" else p for p in names if p in available]
        try:
            self.session = onnxruntime.InferenceSession(str(self.path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
            raise OnnxError(f"{self.path}: cannot load ONNX model: {exc}") from exc
        running = self.session.get_providers()
        if wants_cuda and "CUDAExecutionProvider" not in running:
            raise OnnxError(f"{self.path}: ONNX Runtime's CUDA provider did not load (running on {', '.join(running)})")
        self.device = "cuda" if "CUDAExecutionProvider" in running else "cpu"
        self._tensor_device = torch.device(self.device, self.device_id) if self.device == "cuda" else torch.device("cpu")
        logger.info("%s runs on ONNX Runtime's %s", self.path.name, running[0])
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self._check_io([i.name for i in inputs], [o.name for o in outputs])
        self.input_shape = inputs[0].shape
        self.num_classes = int(outputs[1].shape[1])
        self.num_anchors = int(outputs[1].shape[2])
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def _run(self, images: Tensor) -> tuple[Tensor, Tensor]:
        return self._run_bound(images)

    def _run_bound(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """One run with the input and outputs bound to torch tensors on the session's device."""
        device = self._tensor_device
        images = images.detach().to(device=device, dtype=torch.float32).contiguous()
        batch, anchors = images.shape[0], self.num_anchors
        outputs = (torch.empty(batch, 4, anchors, device=device), torch.empty(batch, self.num_classes, anchors, device=device))
        binding = self.session.io_binding()
        binding.bind_input(INPUT_NAME, self.device, self.device_id, np.float32, tuple(images.shape), images.data_ptr())
        for name, tensor in zip(OUTPUT_NAMES, outputs):
            binding.bind_output(name, self.device, self.device_id, np.float32, tuple(tensor.shape), tensor.data_ptr())
        if device.type == "cuda":  # the input was written on torch's stream; ONNX Runtime runs on its own
            torch.cuda.current_stream(device).synchronize()
        self.session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return outputs


def max_difference(model: nn.Module, path: str | Path, image_size: tuple[int, int], batch_size: int = 1, seed: int = 0) -> float:
    """Largest absolute difference between ONNX Runtime's and PyTorch's outputs on one random batch."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, *image_size, generator=generator)
    device = next(model.parameters()).device
    with torch.inference_mode():
        expected = model.eval()(images.to(device))
    actual = OnnxNetwork(path)(images)
    return max(float((a - e.float().cpu()).abs().max()) for a, e in zip(actual, expected))
