"""``ssd export`` on the tiny config: graph interface, ONNX Runtime and OpenVINO equal to PyTorch, ``predict --backend``."""
from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import torch
from support import TinyFiles, assert_same_detections, write_image

from ssd import Detector
from ssd.cli.main import main
from ssd.data.labels import cognata_fixed
from ssd.checkpoint import load_model
from ssd.onnx_export import OnnxError, OnnxNetwork
from ssd.openvino_network import OpenVinoNetwork


@pytest.fixture(scope="module")
def exported(tiny_files: TinyFiles, tmp_path_factory) -> tuple[Path, str]:
    """A dynamic-batch export of the tiny checkpoint and what ``ssd export`` printed."""
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    argv = ["export", "--config", str(tiny_files.config), "--pretrained-model", str(tiny_files.checkpoint), "--output", str(path), "--dynamic-batch"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return path, printed.getvalue()


def test_graph_interface_and_metadata(exported):
    path, printed = exported
    model = onnx.load(str(path))
    dims = lambda value: [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]  # noqa: E731
    assert [(i.name, dims(i)) for i in model.graph.input] == [("image", ["batch", 3, 64, 128])]
    num_anchors = 64 // 8 * 128 // 8 * 3 + 64 // 16 * 128 // 16 * 2
    assert [(o.name, dims(o)) for o in model.graph.output] == [("locs", ["batch", 4, num_anchors]), ("confs", ["batch", 15, num_anchors])]
    assert next(e.version for e in model.opset_import if e.domain in ("", "ai.onnx")) == 17
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert json.loads(metadata["class_names"]) == list(cognata_fixed().class_names) and metadata["config"] == "tiny"
    difference = float(re.search(r"max absolute difference (\S+)", printed).group(1))
    assert difference < 1e-2


def test_onnxruntime_matches_pytorch(exported, tiny_files: TinyFiles):
    model, _ = load_model(tiny_files.checkpoint, tiny_files.config)
    images = torch.randn(3, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model(images)
    for actual, reference in zip(OnnxNetwork(exported[0])(images), expected):
        torch.testing.assert_close(actual, reference, rtol=1e-3, atol=1e-3 * float(reference.abs().max()))


def test_io_binding_gives_the_plain_runs_outputs_without_copies(exported, monkeypatch):
    """Bound runs (the only ones the network makes) equal ONNX Runtime's plain ``run`` bitwise, also for
    a channels-last input; ONNX Runtime wrote straight into the output tensors it returns."""
    network = OnnxNetwork(exported[0], "cpu")
    images = torch.randn(2, 3, 64, 128, generator=torch.Generator().manual_seed(2))
    expected = network.session.run(["locs", "confs"], {"image": images.numpy()})
    written: list[int] = []
    real_bind = type(network.session.io_binding()).bind_output

    def recording_bind(binding, name, device_type, device_id, element_type, shape, pointer):
        written.append(pointer)
        return real_bind(binding, name, device_type, device_id, element_type, shape, pointer)

    monkeypatch.setattr(type(network.session.io_binding()), "bind_output", recording_bind)
    monkeypatch.setattr(network.session, "run", lambda *args: pytest.fail("unbound run"))
    for batch in (images, images.to(memory_format=torch.channels_last)):
        locs, confs = network(batch)
        assert torch.equal(locs, torch.from_numpy(expected[0])) and torch.equal(confs, torch.from_numpy(expected[1]))
        assert written[-2:] == [locs.data_ptr(), confs.data_ptr()]


def test_openvino_matches_pytorch_in_float32(exported, tiny_files: TinyFiles):
    model, _ = load_model(tiny_files.checkpoint, tiny_files.config)
    network = OpenVinoNetwork(exported[0])
    assert network.compiled.get_property("INFERENCE_PRECISION_HINT").to_string() == "f32"  # never bf16 unasked
    assert network.class_names == tuple(cognata_fixed().class_names) and network.input_shape == ["batch", 3, 64, 128]
    images = torch.randn(3, 3, 64, 128, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model(images)
    for actual, reference in zip(network(images), expected):
        torch.testing.assert_close(actual, reference, rtol=1e-3, atol=1e-3 * float(reference.abs().max()))


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_predict_with_an_exported_model(exported, tiny_files: TinyFiles, tmp_path: Path, backend: str):
    write_image(tmp_path / "street.png", (80, 140))
    flags = ["--config", str(tiny_files.config), "--input", str(tmp_path / "street.png"), "--cls-threshold", "0.3", "--max-boxes", "500"]
    assert main(["predict", *flags, "--backend", backend, "--onnx", str(exported[0]), "--output", str(tmp_path / "onnx.jpg")]) == 0
    assert main(["predict", *flags, "--pretrained-model", str(tiny_files.checkpoint), "--output", str(tmp_path / "torch.jpg")]) == 0
    onnx_records, torch_records = (json.loads((tmp_path / f"{name}.json").read_text())["detections"] for name in ("onnx", "torch"))
    assert onnx_records and len(onnx_records) == len(torch_records)
    as_result = lambda records: {  # noqa: E731
        "boxes": torch.tensor([r["box"] for r in records]), "scores": torch.tensor([r["score"] for r in records]),
        "labels": torch.tensor([r["label"] for r in records]),
    }
    assert_same_detections(as_result(onnx_records), as_result(torch_records), atol=0.05)
    assert {r["name"] for r in onnx_records} <= set(Detector.from_onnx(exported[0], tiny_files.config, engine=backend).class_names)


def test_openvino_missing_or_asked_for_a_gpu_is_one_error(exported, monkeypatch):
    with pytest.raises(OnnxError, match="the OpenVINO backend runs on the CPU"):
        OpenVinoNetwork(exported[0], "cuda")
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    with pytest.raises(OnnxError, match=r"needs OpenVINO: pip install"):
        OpenVinoNetwork(exported[0])


SIGNAL_AFTER_TWO_NETWORKS = """
import os, signal, sys
from ssd.openvino_network import OpenVinoNetwork
signal.signal(signal.SIGUSR1, lambda *args: print("handled", flush=True))
first, second = OpenVinoNetwork(sys.argv[1]), OpenVinoNetwork(sys.argv[1])
del first, second  # destroyed in the order they were made
os.kill(os.getpid(), signal.SIGUSR1)
print("survived", flush=True)
"""


def test_a_signal_after_two_openvino_networks_reaches_its_handler(exported):
    """One Core per process: with a Core per network, two CPU plugins destroyed in the order they were
    made left the thread on an unmapped signal stack, and this signal killed the process (SIGSEGV)."""
    ran = subprocess.run([sys.executable, "-c", SIGNAL_AFTER_TWO_NETWORKS, str(exported[0])], capture_output=True, text=True, timeout=120)
    assert (ran.returncode, ran.stdout.split()) == (0, ["handled", "survived"]), ran.stderr


def test_export_and_onnx_errors(tiny_files: TinyFiles, tmp_path: Path, capsys):
    (tmp_path / "fake.onnx").write_bytes(b"not onnx")
    cases = [
        (["export", "--config", "coco_300x300", "--pretrained-model", str(tiny_files.checkpoint), "--output", str(tmp_path / "x.onnx")], "shape"),
        (["export", "--config", str(tiny_files.config), "--pretrained-model", str(tiny_files.checkpoint), "--output", str(tmp_path / "x.pt")], ".onnx"),
        (["predict", "--config", str(tiny_files.config), "--input", str(tiny_files.config), "--backend", "onnxruntime"], "--onnx"),
        (["predict", "--config", str(tiny_files.config), "--input", str(tiny_files.config), "--backend", "onnxruntime",
          "--onnx", str(tmp_path / "fake.onnx")], "fake.onnx: not a readable ONNX model"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err


@pytest.mark.hostile("silence and vague words")
@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_a_truncated_export_or_a_checkpoint_given_as_one_is_one_line_on_either_engine(exported, tiny_files: TinyFiles, tmp_path: Path,
                                                                                      capfd, engine: str):
    truncated = tmp_path / "truncated.onnx"
    data = exported[0].read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    for path in (truncated, tiny_files.checkpoint):
        argv = ["predict", "--config", str(tiny_files.config), "--input", str(tiny_files.config), "--backend", engine, "--onnx", str(path)]
        assert main(argv) == 2
        err = capfd.readouterr().err.strip().splitlines()  # the C++ side's output too: no engine log, no exception text
        assert err == [f"error: {path}: not a readable ONNX model (DecodeError): a truncated file, or not an export "
                       "(a checkpoint is read by --pretrained-model)"], err


def test_onnx_runtime_runs_where_asked_or_says_why_not(exported, tiny_files: TinyFiles, tmp_path: Path, capsys):
    import onnxruntime

    for bad in ("cuda:x", "tpu", "cpu:"):
        with pytest.raises(OnnxError, match=f"^device {bad}: ONNX Runtime runs on cpu, cuda or cuda:N"):
            OnnxNetwork(exported[0], bad)
    assert OnnxNetwork(exported[0], "cpu:0").device == "cpu"
    for device in (None, "cpu"):
        detector = Detector.from_onnx(exported[0], tiny_files.config, device=device)
        assert detector.device.type == ("cuda" if device is None and "CUDAExecutionProvider" in onnxruntime.get_available_providers() else "cpu")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():  # a GPU build: CUDA must then really run
        assert Detector.from_onnx(exported[0], tiny_files.config, device="cuda").device.type == "cuda"
        return
    write_image(tmp_path / "street.png", (80, 140))
    argv = ["predict", "--config", str(tiny_files.config), "--input", str(tmp_path / "street.png"), "--backend", "onnxruntime",
            "--onnx", str(exported[0]), "--device", "cuda"]
    assert main(argv) == 2
    assert capsys.readouterr().err.strip() == f"error: {exported[0]}: --device cuda but this ONNX Runtime has no CUDA provider (install onnxruntime-gpu)"


def test_loadgen_with_openvino_logs_the_pytorch_paths_detections(exported, tiny_files: TinyFiles, tmp_path: Path):
    from ssd.loadgen import ACCURACY_LOG, read_accuracy_log

    common = ["loadgen", "--config", str(tiny_files.config), "--data-path", str(tiny_files.data), "--device", "cpu", "--accuracy", "--count", "3"]
    assert main([*common, "--backend", "openvino", "--onnx", str(exported[0]), "--output-dir", str(tmp_path / "ov")]) == 0
    assert main([*common, "--pretrained-model", str(tiny_files.checkpoint), "--output-dir", str(tmp_path / "torch")]) == 0
    ours, reference = read_accuracy_log(tmp_path / "ov" / ACCURACY_LOG), read_accuracy_log(tmp_path / "torch" / ACCURACY_LOG)
    assert sorted(ours) == sorted(reference) == [0, 1, 2]
    for index in ours:
        as_result = lambda rows: {"boxes": torch.from_numpy(rows[:, :4].copy()), "scores": torch.from_numpy(rows[:, 5].copy()),  # noqa: E731
                                  "labels": torch.from_numpy(rows[:, 4].copy())}
        assert len(ours[index]) == len(reference[index]) > 0
        assert_same_detections(as_result(ours[index]), as_result(reference[index]), atol=0.05)


def test_auto_runs_an_export_with_openvino_on_the_cpu_else_onnx_runtime(exported, tiny_files: TinyFiles, monkeypatch):
    from ssd.inference import fastest_engine

    assert fastest_engine("cpu") == "openvino" and fastest_engine("cuda") == "onnxruntime" and fastest_engine("cuda:1") == "onnxruntime"
    assert type(Detector.from_onnx(exported[0], tiny_files.config, device="cpu").network) is OpenVinoNetwork
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU, but this ONNX Runtime has no CUDA provider
    assert fastest_engine(None) == "openvino"
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed
    assert fastest_engine("cpu") == "onnxruntime"
    assert type(Detector.from_onnx(exported[0], tiny_files.config, device="cpu").network) is OnnxNetwork


def test_backend_flags_that_contradict_each_other_are_one_error(exported, tiny_files: TinyFiles, tmp_path: Path, capsys):
    base = ["predict", "--config", str(tiny_files.config), "--input", str(tiny_files.config)]
    cases = [
        (["--onnx", str(exported[0]), "--pretrained-model", str(tiny_files.checkpoint)], "not both"),
        (["--backend", "torch", "--onnx", str(exported[0])], "drop --onnx"),
        ([], "--pretrained-model (PyTorch) or --onnx (an export) is required"),
        (["--backend", "openvino", "--pretrained-model", str(tiny_files.checkpoint)], "--backend openvino needs --onnx"),
    ]
    for flags, expected in cases:
        assert main(base + flags) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expected in err[0], err
