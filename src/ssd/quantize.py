"""INT8 post-training quantization of the exported network (``ssd export --int8``).

The float32 export (BatchNorm folded first, so the quantizer sees the convolutions the engines
run) is quantized by ONNX Runtime's static quantizer into a QDQ ONNX file: int8 weights per output
channel, symmetric; uint8 activations per tensor with ranges measured on calibration frames. The
file keeps the export's input, outputs and metadata (plus ``precision: int8``), and both
``--backend onnxruntime`` and ``--backend openvino`` run it with their int8 kernels. ONNX Runtime's
quantizer rather than NNCF: it ships with ONNX Runtime (no new dependency tree) and its one file
serves both engines.

Weights use 7 bits (``reduce_range``) by default: on CPUs without VNNI (AVX2, AVX-512 without
VNNI) the int8 kernels add pairs of uint8 x int8 products in 16 bits, which can saturate with
8-bit weights; ONNX Runtime advises 7 bits there.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np
from torch import Tensor, nn

from ssd.atomic_file import write_atomically
from ssd.errors import SSDError
from ssd.models.fold import fold_batchnorm
from ssd.onnx_export import INPUT_NAME, PRECISION_KEY, OnnxError, export_onnx, read_metadata

# ONNX Runtime's quantizer logs its advice to run its pre-processing (shape inference and graph
# fusions) at WARNING on the root logger; the export already folds BatchNorm and has static shapes
_QUANTIZER_ADVICE = "pre-processing before quantization"


class _CalibrationFrames:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over network inputs ``[3, H, W]`` (one per run)."""

    def __init__(self, frames: Iterable[Tensor]):
        self._frames = iter(frames)
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        frame = next(self._frames, None)
        if frame is None:
            return None
        self.count += 1
        return {INPUT_NAME: np.ascontiguousarray(frame.detach().float().cpu().numpy()[None])}


class _DropAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return _QUANTIZER_ADVICE not in record.getMessage()


@contextlib.contextmanager
def _without_quantizer_advice() -> Iterator[None]:
    root, advice = logging.getLogger(), _DropAdvice()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def _calibrate(fp32_path: Path, frames: _CalibrationFrames, scratch: Path) -> Path:
    """Min-max ranges of every tensor the quantizer needs, over ``frames``; the JSON file
    ``quantize_static`` reads them from (its calibration cache).

    ONNX Runtime's calibrator adds a ReduceMin and a ReduceMax for each tensor and runs the graph.
    Its session uses the default execution order, which schedules those reductions after the whole
    network, so every activation of a frame stays alive until the end (tens of GB at 8 MP). Run in
    priority order (the nodes as listed, each reduction next to its tensor), a frame takes the memory
    inference takes (figures in docs/performance.md)."""
    import onnxruntime
    from onnxruntime.quantization.calibrate import MinMaxCalibrater, save_tensors_data

    class InOrderMinMax(MinMaxCalibrater):
        def create_inference_session(self) -> None:
            options = onnxruntime.SessionOptions()
            options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL  # as the calibrator's own
            options.execution_order = onnxruntime.ExecutionOrder.PRIORITY_BASED
            self.infer_session = onnxruntime.InferenceSession(self.augmented_model_path, sess_options=options, providers=["CPUExecutionProvider"])

    calibrator = InOrderMinMax(str(fp32_path), augmented_model_path=str(scratch / "augmented.onnx"))
    calibrator.augment_graph()
    calibrator.create_inference_session()
    calibrator.collect_data(frames)
    ranges = scratch / "ranges.json"
    save_tensors_data(calibrator.compute_data(), ranges)
    return ranges


def quantize_onnx(
    fp32_path: str | Path,
    path: str | Path,
    calibration: Iterable[Tensor],
    *,
    reduce_range: bool = True,
) -> int:
    """Write ``path``: the INT8 QDQ model of the float32 ONNX file ``fp32_path``, each activation's
    range the smallest and largest value it takes on ``calibration`` (network inputs ``[3, H, W]``,
    normalised as the validation transform does; zero always in range). Returns the number of
    calibration frames used.

    Min-max calibration reduces each tensor inside the graph, one frame at a time, so it needs the
    memory inference needs (:func:`_calibrate`); the histogram methods keep whole tensors and would
    need tens of GB at 8 MP."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    import onnx

    path, reader = Path(path), _CalibrationFrames(calibration)
    with tempfile.TemporaryDirectory() as folder, _without_quantizer_advice():
        scratch = Path(folder)
        try:
            ranges = _calibrate(Path(fp32_path), reader, scratch)
        except SSDError:  # an unreadable calibration frame: its own message names it
            raise
        except Exception as exc:  # the calibrator raises many types (ONNX Runtime, numpy, IO)
            if reader.count == 0:
                raise OnnxError(f"{path}: quantization needs at least one calibration frame") from exc
            raise OnnxError(f"{path}: calibration failed: {exc}") from exc
        if reader.count == 0:
            raise OnnxError(f"{path}: quantization needs at least one calibration frame")
        try:
            quantize_static(
                str(fp32_path), str(scratch / "int8.onnx"), None, quant_format=QuantFormat.QDQ, per_channel=True, reduce_range=reduce_range,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                calibration_cache_path=str(ranges),
            )
        except Exception as exc:  # the quantizer raises many types (ONNX Runtime, onnx, IO)
            raise OnnxError(f"{path}: quantization failed: {exc}") from exc
        proto = onnx.load(str(scratch / "int8.onnx"))
    source = read_metadata(fp32_path)
    written = {entry.key for entry in proto.metadata_props}
    for key, value in {**source, PRECISION_KEY: "int8"}.items():
        if key not in written:
            proto.metadata_props.add(key=key, value=value)
    write_atomically(path, proto.SerializeToString())
    return reader.count


def export_int8(
    model: nn.Module,
    image_size: tuple[int, int],
    path: str | Path,
    calibration: Iterable[Tensor],
    *,
    metadata: Mapping[str, str] | None = None,
    reduce_range: bool = True,
    opset: int = 17,
) -> int:
    """Export ``model`` with BatchNorm folded and write its INT8 QDQ model to ``path`` (batch 1),
    calibrated on ``calibration`` (:func:`quantize_onnx`). Returns the number of calibration frames."""
    with tempfile.TemporaryDirectory() as scratch:
        fp32 = export_onnx(fold_batchnorm(model), image_size, Path(scratch) / "fp32.onnx", opset=opset, metadata=metadata)
        return quantize_onnx(fp32, path, calibration, reduce_range=reduce_range)
