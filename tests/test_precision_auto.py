"""``--precision auto``, the default of ``ssd predict`` and ``ssd loadgen``: bf16 where the CPU runs it
natively and the engine's bf16 accuracy was measured, fp32 elsewhere; on both kinds of CPU, the
capability read from a /proc/cpuinfo of each kind (the machine's own is one of them)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import TinyFiles, model_flags, write_image

import ssd.choices
import ssd.device
from ssd.choices import BF16_MEASURED_ENGINES, choose_precision
from ssd.cli.main import main
from ssd.detector_spec import DetectorSpec
from ssd.device import cpu_flags, native_bf16
from ssd.run_record import RECORD_NAME

FLAGS = {  # the flags lines of two kinds of CPU, as Linux lists them
    "avx2": "fpu vme de pse tsc msr sse sse2 ssse3 sse4_1 sse4_2 avx f16c avx2 fma bmi2",
    "avx512-bf16": "fpu vme sse sse2 avx avx2 fma avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16",
    "amx": "fpu sse avx avx2 avx512f avx512_vnni amx_tile amx_int8 amx_bf16",
}


@pytest.fixture(params=["avx2", "avx512-bf16"])
def cpu(request, tmp_path: Path, monkeypatch) -> str:
    """A CPU of each kind: its /proc/cpuinfo (two cores) in place of this machine's."""
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("".join(f"processor\t: {k}\nmodel name\t: some CPU\nflags\t\t: {FLAGS[request.param]}\n\n" for k in range(2)))
    monkeypatch.setattr(ssd.device, "CPUINFO", cpuinfo)
    return request.param


def test_the_capability_is_read_from_the_cpu_flags(tmp_path: Path, monkeypatch):
    for kind, expected in (("avx2", False), ("avx512-bf16", True), ("amx", True)):
        assert native_bf16(frozenset(FLAGS[kind].split())) is expected, kind
    monkeypatch.setattr(ssd.device, "CPUINFO", tmp_path / "missing")
    assert cpu_flags() == frozenset() and native_bf16() is False  # unreadable: nothing claimed
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: sse avx512_bf16x\nbugs\t\t: avx512_bf16\n")  # near-misses only
    monkeypatch.setattr(ssd.device, "CPUINFO", cpuinfo)
    assert native_bf16() is False


@pytest.fixture(params=["as measured", "torch within the rule"])
def measured(request, monkeypatch) -> tuple[str, ...]:
    """The engines whose bf16 kept the mAP: the README's table (none), and a table where PyTorch's did,
    so that the side choosing bf16 runs too."""
    if request.param == "torch within the rule":
        monkeypatch.setattr(ssd.choices, "BF16_MEASURED_ENGINES", ("torch",))
    return ssd.choices.BF16_MEASURED_ENGINES


def test_no_engines_bf16_is_within_the_rule_as_measured():
    assert BF16_MEASURED_ENGINES == ()  # the README's accuracy table on a CPU with native bfloat16: 99.69 % and 99.49 %


@pytest.mark.parametrize("native", [False, True])
def test_the_choice_for_each_engine_device_and_file(native: bool, measured: tuple[str, ...]):
    for engine in ("torch", "openvino", "onnxruntime"):
        precision, why = choose_precision(engine, "cpu", native)
        if not native:
            assert precision == "fp32" and "no native bfloat16" in why
        elif engine in measured:
            assert precision == "bf16" and "within MLPerf's 99.9 %" in why
        else:
            assert precision == "fp32" and "has not kept" in why
    assert choose_precision("torch", "cuda", native) == ("fp32", "on cuda no half precision's accuracy has been measured")
    assert choose_precision("openvino", "cpu", native, int8_file=True)[0] == "fp32"


def test_predict_and_loadgen_default_to_auto_and_say_what_it_chose(cpu: str, measured: tuple[str, ...], tiny_files: TinyFiles, tmp_path: Path,
                                                                 capsys):
    expected = "bf16" if cpu == "avx512-bf16" and "torch" in measured else "fp32"
    spec, why = DetectorSpec(tiny_files.config, pretrained_model=tiny_files.checkpoint, precision="auto", device="cpu").with_chosen_precision()
    assert spec.precision == expected and why
    given, reason = DetectorSpec(tiny_files.config, pretrained_model=tiny_files.checkpoint, precision="fp32", device="cpu").with_chosen_precision()
    assert given.precision == "fp32" and reason == "given"

    write_image(tmp_path / "street.png", (80, 140))
    assert main(["predict", *model_flags(tiny_files), "--input", str(tmp_path / "street.png"), "--output", str(tmp_path / "out.jpg")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("precision auto:")]
    assert lines == [f"precision auto: {expected} ({why})"]
    # both LoadGen modes choose alike and record it (TEST01 compares the performance run with the accuracy run)
    records = {}
    for mode in ("accuracy", "performance"):
        out = tmp_path / mode
        extra = ["--accuracy"] if mode == "accuracy" else ["--time", "1"]
        assert main(["loadgen", *model_flags(tiny_files), "--data-path", str(tiny_files.data), "--count", "2", "--output-dir", str(out), *extra]) == 0
        records[mode] = json.loads((out / RECORD_NAME).read_text())
    assert records["accuracy"]["model"] == records["performance"]["model"]
    assert records["accuracy"]["model"]["precision"] == expected
    assert capsys.readouterr().out.count(f"precision auto: {expected} (") == 2


def test_a_given_precision_is_not_announced(tiny_files: TinyFiles, tmp_path: Path, capsys):
    write_image(tmp_path / "street.png", (80, 140))
    assert main(["predict", *model_flags(tiny_files), "--precision", "fp32", "--input", str(tmp_path / "street.png"),
                 "--output", str(tmp_path / "out.jpg")]) == 0
    assert "precision auto" not in capsys.readouterr().out


def test_training_and_evaluation_have_no_auto(capsys):
    for command in (["train", "--dataset", "coco"], ["evaluate"]):
        assert main([*command, "--precision", "auto"]) == 2
        assert "invalid choice: 'auto'" in capsys.readouterr().err
