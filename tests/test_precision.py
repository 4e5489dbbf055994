"""Reduced precision: the INT8 export (``ssd export --int8``, :mod:`ssd.quantize`), bfloat16 autocast
and OpenVINO's bf16 (``--precision``), and the detection agreement measure."""
from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from support import TinyFiles, write_image

from ssd import Detector
from ssd.checkpoint import load_model
from ssd.config import load_config
from ssd.data.kinds import build_dataset
from ssd.cli.main import main
from ssd.data.labels import cognata_fixed
from ssd.evaluation.agreement import reproduced_fraction
from ssd.onnx_export import OnnxError, OnnxNetwork, export_onnx
from ssd.openvino_network import OpenVinoNetwork, cpu_capabilities
from ssd.quantize import quantize_onnx

CALIBRATION_FRAMES = 6


@pytest.fixture(scope="module")
def int8_export(tiny_files: TinyFiles, tmp_path_factory) -> tuple[Path, str]:
    """``ssd export --int8`` of the tiny checkpoint, calibrated on its Cognata train split, and what it printed."""
    path = tmp_path_factory.mktemp("int8") / "tiny.int8.onnx"
    argv = [
        "export", "--config", str(tiny_files.config), "--pretrained-model", str(tiny_files.checkpoint), "--output", str(path),
        "--int8", "--dataset", "cognata", "--data-path", str(tiny_files.data), "--count", str(CALIBRATION_FRAMES),
    ]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return path, printed.getvalue()


@pytest.fixture(scope="module")
def fp32_export(tiny_files: TinyFiles, tmp_path_factory) -> Path:
    """The tiny checkpoint's float32 export (batch 1)."""
    model, _ = load_model(tiny_files.checkpoint, tiny_files.config)
    return export_onnx(model, (64, 128), tmp_path_factory.mktemp("fp32") / "fp32.onnx")


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}


def test_the_int8_file_is_an_ssd_export_with_int8_convolution_weights(int8_export):
    path, printed = int8_export
    model = onnx.load(str(path))
    assert [i.name for i in model.graph.input] == ["image"] and [o.name for o in model.graph.output] == ["locs", "confs"]
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 64, 128]
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert metadata["precision"] == "int8" and metadata["config"] == "tiny"
    assert json.loads(metadata["class_names"]) == list(cognata_fixed().class_names)
    # every convolution reads its weights through a DequantizeLinear of an int8 initializer (BatchNorm folded)
    producers = {output: node for node in model.graph.node for output in node.output}
    initializers = _initializers(model)
    convolutions = [node for node in model.graph.node if node.op_type == "Conv"]
    assert convolutions and not any(node.op_type == "BatchNormalization" for node in model.graph.node)
    for conv in convolutions:
        weight = producers[conv.input[1]]
        assert weight.op_type == "DequantizeLinear" and initializers[weight.input[0]].dtype == np.int8, conv.name
        assert producers[conv.input[0]].op_type == "DequantizeLinear", conv.name  # and a quantized activation
    assert f"calibrated on {CALIBRATION_FRAMES} frames" in printed
    fraction = float(re.search(r"on 2 calibration frames: (\S+)% of the detections reproduced", printed).group(1))
    assert 0 <= fraction <= 100


def test_both_engines_run_the_int8_model_close_to_pytorch_fp32(int8_export, tiny_files: TinyFiles):
    """On held-out frames (the val split; calibration read the train split)."""
    model, _ = load_model(tiny_files.checkpoint, tiny_files.config)
    images, _ = _held_out_batch(tiny_files)
    with torch.inference_mode():
        expected = model(images)
    runs = {engine: network(images) for engine, network in (("ort", OnnxNetwork(int8_export[0])), ("ov", OpenVinoNetwork(int8_export[0])))}
    for engine, outputs in runs.items():
        for actual, reference in zip(outputs, expected):
            error = float((actual - reference).abs().max()) / float(reference.abs().max())
            assert 1e-5 < error < 0.1, (engine, error)  # quantized (not the float graph), yet close
    for ort_output, ov_output, reference in zip(runs["ort"], runs["ov"], expected):
        assert float((ort_output - ov_output).abs().max()) < 0.1 * float(reference.abs().max())


def _input_quantization(path: Path) -> tuple[float, int]:
    model = onnx.load(str(path))
    initializers = _initializers(model)
    node = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "image")
    return float(initializers[node.input[1]]), int(initializers[node.input[2]])


def test_minmax_calibration_takes_the_range_of_every_frame(fp32_export: Path, tmp_path: Path):
    """The input's uint8 range spans the smallest and largest value over all calibration frames
    (zero included): scale (max - min) / 255, zero point -min / scale."""
    fp32 = fp32_export
    low, high = torch.full((3, 64, 128), -1.5), torch.full((3, 64, 128), 0.5)
    low[0, 0, 0], high[1, 2, 3] = -1.5, 3.6
    assert quantize_onnx(fp32, tmp_path / "both.onnx", [low, high]) == 2
    scale, zero_point = _input_quantization(tmp_path / "both.onnx")
    assert scale == pytest.approx(5.1 / 255, rel=1e-6) and zero_point == round(1.5 / (5.1 / 255))
    quantize_onnx(fp32, tmp_path / "low.onnx", [low])
    scale, zero_point = _input_quantization(tmp_path / "low.onnx")
    assert scale == pytest.approx(1.5 / 255, rel=1e-6) and zero_point == 255  # the range always holds 0


def test_quantization_without_usable_frames_fails_and_writes_nothing(fp32_export: Path, tmp_path: Path):
    fp32 = fp32_export
    with pytest.raises(OnnxError, match="at least one calibration frame"):
        quantize_onnx(fp32, tmp_path / "int8.onnx", [])
    with pytest.raises(OnnxError, match="calibration failed"):  # frames of the wrong size
        quantize_onnx(fp32, tmp_path / "int8.onnx", [torch.zeros(3, 32, 32)])
    assert list(tmp_path.iterdir()) == []


def test_export_int8_bad_flags_are_one_error_each(tiny_files: TinyFiles, tmp_path: Path, capsys):
    base = ["export", "--config", str(tiny_files.config), "--pretrained-model", str(tiny_files.checkpoint), "--output", str(tmp_path / "q.onnx")]
    data = ["--int8", "--dataset", "cognata", "--data-path", str(tiny_files.data)]
    cases = [
        (base + ["--int8"], "--int8 needs calibration frames"),
        (base + data + ["--dynamic-batch"], "drop --dynamic-batch"),
        (base + data + ["--count", "0"], "argument --count: a count must be a whole number of at least 1, got 0"),
        (base + data + ["--split", "nosuchsplit"], "nosuchsplit"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "q.onnx").exists()


def test_predict_runs_the_int8_model(int8_export, tiny_files: TinyFiles, tmp_path: Path):
    write_image(tmp_path / "street.png", (80, 140))
    flags = ["--config", str(tiny_files.config), "--input", str(tmp_path / "street.png"), "--cls-threshold", "0.3", "--max-boxes", "500"]
    for backend in ("onnxruntime", "openvino"):
        assert main(["predict", *flags, "--backend", backend, "--onnx", str(int8_export[0]), "--output", str(tmp_path / f"{backend}.jpg")]) == 0
        assert json.loads((tmp_path / f"{backend}.json").read_text())["detections"]


def _result(rows: list[list[float]]) -> dict[str, torch.Tensor]:
    table = torch.tensor(rows, dtype=torch.float64).reshape(-1, 5)
    return {"boxes": table[:, :4], "labels": table[:, 4].long()}


def test_reproduced_fraction_counts_same_label_boxes_within_the_tolerance():
    reference = [_result([[10, 10, 50, 50, 1], [0, 0, 20, 20, 2]]), _result([[5, 5, 9, 9, 3]])]
    assert reproduced_fraction(reference, reference) == 1.0
    at_tolerance = [_result([[11, 9, 51, 49, 1]]), _result([[5, 5, 9, 9, 3]])]  # every side exactly 1 px off: counted
    assert reproduced_fraction(reference, at_tolerance) == pytest.approx(2 / 3)
    beyond = [_result([[11.001, 10, 50, 50, 1]]), _result([[5, 5, 9, 9, 3]])]
    assert reproduced_fraction(reference, beyond) == pytest.approx(1 / 3)
    other_label = [_result([[10, 10, 50, 50, 2]]), _result([])]
    assert reproduced_fraction(reference, other_label) == 0.0
    other_image = [_result([[5, 5, 9, 9, 3]]), _result([[10, 10, 50, 50, 1]])]  # matches only count within their image
    assert reproduced_fraction(reference, other_image) == 0.0
    assert reproduced_fraction([_result([])], [_result([[1, 1, 2, 2, 1]])]) == 1.0
    with pytest.raises(ValueError, match="2 reference images, 1 to compare"):
        reproduced_fraction(reference, reference[:1])


def _held_out_batch(tiny_files: TinyFiles, count: int = 2) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    held_out = build_dataset("cognata", tiny_files.data, "val", load_config(tiny_files.config))
    detector = Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config)
    frames = [held_out.network_input(index, detector.preprocess) for index in range(count)]
    return torch.stack([image for image, _ in frames]), [size for _, size in frames]


def test_bf16_autocast_runs_the_network_in_bfloat16_close_to_fp32(tiny_files: TinyFiles):
    images, sizes = _held_out_batch(tiny_files)
    fp32 = Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config, score_threshold=0.3)
    bf16 = Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config, score_threshold=0.3, precision="bf16")
    dtypes = []
    first_conv = next(module for module in bf16.network.modules() if isinstance(module, torch.nn.Conv2d))
    handle = first_conv.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    expected, actual = fp32.detect(images, sizes), bf16.detect(images, sizes)
    handle.remove()
    assert dtypes == [torch.bfloat16] and bf16.precision == "bf16" and fp32.precision == "fp32"
    assert sum(len(r["labels"]) for r in expected) > 10
    assert reproduced_fraction(expected, actual, tolerance=2.0) > 0.5
    assert any(not torch.equal(e["scores"], a["scores"]) for e, a in zip(expected, actual))  # not the float32 run


def test_precisions_that_do_not_apply_are_one_error(int8_export, fp32_export: Path, tiny_files: TinyFiles, capsys):
    from ssd.choices import PrecisionError
    from ssd.inference import InferenceError

    with pytest.raises(PrecisionError, match="precision int4: expected one of fp32, bf16, fp16, amp"):
        Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config, precision="int4")
    with pytest.raises(InferenceError, match="precision bf16 is an autocast of a PyTorch network"):
        Detector(OnnxNetwork(fp32_export), load_config(tiny_files.config), cognata_fixed().class_names, precision="bf16")
    with pytest.raises(OnnxError, match="ONNX Runtime runs the export as stored"):
        Detector.from_onnx(fp32_export, tiny_files.config, engine="onnxruntime", precision="bf16")
    with pytest.raises(OnnxError, match="OpenVINO runs fp32 or bf16"):
        Detector.from_onnx(fp32_export, tiny_files.config, engine="openvino", precision="fp16")
    argv = ["predict", "--config", str(tiny_files.config), "--input", str(tiny_files.config), "--onnx", str(int8_export[0]),
            "--backend", "onnxruntime", "--precision", "bf16"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "ONNX Runtime runs the export as stored" in err[0], err


class SimulatedBf16Core:
    """OpenVINO's Core as on a CPU with native bfloat16 (AVX-512 BF16 or AMX), over the real one: it
    reports the BF16 capability, records what each compilation asked for, and reports the compiled
    precision ``compiles_to`` (None: whatever the real CPU compiled)."""

    def __init__(self, real, compiles_to: str | None):
        self.real, self.compiles_to, self.asked = real, compiles_to, []

    def get_property(self, device: str, name: str):
        value = self.real.get_property(device, name)
        return [*value, "BF16"] if name == "OPTIMIZATION_CAPABILITIES" and "BF16" not in value else value

    def compile_model(self, path: str, device: str, config: dict):
        self.asked.append(config["INFERENCE_PRECISION_HINT"])
        compiled = self.real.compile_model(path, device, config)
        return compiled if self.compiles_to is None else CompiledAs(compiled, self.compiles_to)


class CompiledAs:
    """A compiled model that reports ``precision`` as its inference precision."""

    def __init__(self, compiled, precision: str):
        self.compiled, self.precision = compiled, precision

    def get_property(self, name: str):
        import openvino

        return getattr(openvino.Type, self.precision) if name == "INFERENCE_PRECISION_HINT" else self.compiled.get_property(name)

    def __getattr__(self, name: str):
        return getattr(self.compiled, name)


NATIVE_BF16 = "BF16" in cpu_capabilities()


def test_openvino_bf16_compiles_in_bfloat16_where_the_cpu_has_it(fp32_export: Path, tiny_files: TinyFiles, monkeypatch):
    """The real CPU where it has native bfloat16; elsewhere one simulated (OpenVINO's Core reporting BF16)."""
    import ssd.openvino_network as openvino_network

    if not NATIVE_BF16:
        core = SimulatedBf16Core(openvino_network.openvino_core(), compiles_to="bf16")
        monkeypatch.setattr(openvino_network, "openvino_core", lambda: core)
    network = OpenVinoNetwork(fp32_export, precision="bf16")
    assert network.precision == "bf16" and network.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "bf16"
    if not NATIVE_BF16:
        assert core.asked == ["bf16"]
    detector = Detector(network, load_config(tiny_files.config), cognata_fixed().class_names)
    assert detector.detect(torch.zeros(1, 3, 64, 128), [(64, 128)])[0]["boxes"].shape[1] == 4


def test_openvino_bf16_is_refused_where_the_cpu_lacks_it(fp32_export: Path, monkeypatch):
    """The real CPU where it lacks bfloat16; elsewhere its capabilities without BF16."""
    import ssd.openvino_network as openvino_network

    if NATIVE_BF16:
        real = openvino_network.cpu_capabilities()
        monkeypatch.setattr(openvino_network, "cpu_capabilities", lambda: [c for c in real if c != "BF16"])
    with pytest.raises(OnnxError, match="this CPU has no native bfloat16 .* it needs AVX-512 BF16 or AMX"):
        OpenVinoNetwork(fp32_export, precision="bf16")  # OpenVINO would run float32 and say nothing


def test_a_compiled_precision_other_than_the_one_asked_is_refused(fp32_export: Path, monkeypatch):
    """Wherever the capability list and the compiler disagree, the compiled model's precision decides."""
    import ssd.openvino_network as openvino_network

    core = SimulatedBf16Core(openvino_network.openvino_core(), compiles_to="f32")
    monkeypatch.setattr(openvino_network, "openvino_core", lambda: core)
    with pytest.raises(OnnxError, match=r"precision bf16: OpenVINO compiled fp32.onnx for f32 instead \(CPU capabilities: .*BF16"):
        OpenVinoNetwork(fp32_export, precision="bf16")
    assert OpenVinoNetwork(fp32_export, precision="fp32").precision == "fp32"  # what CompiledAs reports for f32 too


def test_predict_with_bf16_autocast(tiny_files: TinyFiles, tmp_path: Path):
    write_image(tmp_path / "street.png", (80, 140))
    flags = ["--config", str(tiny_files.config), "--input", str(tmp_path / "street.png"), "--pretrained-model", str(tiny_files.checkpoint),
             "--cls-threshold", "0.3"]
    assert main(["predict", *flags, "--precision", "bf16", "--output", str(tmp_path / "bf16.jpg")]) == 0
    assert main(["predict", *flags, "--output", str(tmp_path / "fp32.jpg")]) == 0
    records = {name: json.loads((tmp_path / f"{name}.json").read_text())["detections"] for name in ("bf16", "fp32")}
    assert records["fp32"] and len(records["bf16"]) > 0.5 * len(records["fp32"])


def test_int8_export_calibrates_on_mlperf_preprocessed_calibration_frames(tiny_files: TinyFiles, tmp_path: Path, capsys):
    """MLPerf ships its calibration set preprocessed (calib_<i>.pkl): --dataset Cognata-preprocessed reads
    the calib split by default; a folder with only validation frames is one clear error."""
    from ssd.data.preprocessed import synth_preprocessed

    frames = synth_preprocessed(tmp_path / "calib", 4, size=(64, 128), prefix="calib").images
    assert frames >= 2
    synth_preprocessed(tmp_path / "val", 2, size=(64, 128), prefix="val")
    base = ["export", "--config", str(tiny_files.config), "--pretrained-model", str(tiny_files.checkpoint), "--int8",
            "--dataset", "Cognata-preprocessed"]
    assert main([*base, "--data-path", str(tmp_path / "calib"), "--output", str(tmp_path / "q.onnx")]) == 0
    assert f"calibrated on {frames} frames of {tmp_path / 'calib'} calib" in capsys.readouterr().out
    assert main([*base, "--data-path", str(tmp_path / "val"), "--output", str(tmp_path / "v.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no calib_<i>.pkl files" in err[0] and not (tmp_path / "v.onnx").exists(), err


def test_an_unreadable_calibration_image_is_named(tiny_files: TinyFiles, tmp_path: Path, capsys):
    import shutil

    data = tmp_path / "cognata"
    shutil.copytree(tiny_files.data, data)
    victim = build_dataset("cognata", data, "all", load_config(tiny_files.config)).image_path(0)  # the first calibration frame
    victim.write_bytes(victim.read_bytes()[:60])  # the header passes the dataset's scan; decoding fails
    argv = ["export", "--config", str(tiny_files.config), "--pretrained-model", str(tiny_files.checkpoint), "--output", str(tmp_path / "q.onnx"),
            "--int8", "--dataset", "cognata", "--data-path", str(data), "--split", "all", "--count", "100"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and victim.name in err[0], err
    assert not (tmp_path / "q.onnx").exists()
