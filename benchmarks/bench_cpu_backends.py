"""8 MP latency on the CPU, one engine against another: plain eager PyTorch fp32, our ``Detector``
(channels-last, BatchNorm folded), ONNX Runtime and OpenVINO on our float32 export, and both on
our INT8 export (``ssd export --int8``, calibrated on ``--calibration`` other generated frames);
``Detector`` under bfloat16 autocast and OpenVINO in bf16 where the CPU runs bfloat16 natively
(AVX-512 BF16 or AMX; elsewhere it is emulated, which measures nothing useful, so they are skipped
unless named in ``--engines``).

Each engine runs in a process of its own on the same generated frames, already preprocessed (the
MLPerf harness's preprocessed arrays; generated once by the parent and read from a memory-mapped
file, so a side's peak memory is its engine's plus one frame), batch 1, forward and decoding with MLPerf's settings: latency
p50 and p99.9 over ``--frames`` frames after one warm-up, peak resident memory, and the fraction of
the plain fp32 run's detections each engine reproduces (same label, every box side within 1 px).
The weights are randomly initialised (seeded), the same for every engine, so the reproduced
fraction measures agreement, not accuracy (``bench_quantized_accuracy.py`` measures mAP on a trained
model). The fastest engines run first, plain eager last. Then the roofline (``roofline.py``): the
model's GFLOP/s at each engine's p50 latency, and its share of the peak of the engine's own library
and precision, measured in the same run on the model's dominant convolution.

Run: .venv/bin/python benchmarks/bench_cpu_backends.py [--frames 20] [--frames-of eager=5 ...] [--calibration 4] [--engines ...]
     [--config baseline_8MP_ss_scales_fm1_5x5_all] [--work-dir DIR]
(with ``--work-dir``, the exports and frames made there by an earlier run of the same config are reused)
"""
from __future__ import annotations

from common import peak_rss_gib, report, run_side  # first: it turns huge pages on before torch loads

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

ENGINES = ("openvino-int8", "onnxruntime-int8", "openvino-bf16", "detector-bf16", "openvino", "detector", "onnxruntime", "eager")
PROBE_OF = {  # engine -> the peak probe of its library and precision (roofline.py)
    "openvino-int8": "openvino-int8", "onnxruntime-int8": "onnxruntime-int8", "openvino-bf16": "openvino-bf16", "detector-bf16": "torch-bf16",
    "openvino": "openvino-fp32", "detector": "torch-fp32", "onnxruntime": "onnxruntime-fp32", "eager": "torch-fp32",
}
FRAMES = "frames.npy"  # [N, 3, H, W] float32, the benchmark's frames
REFERENCE = "eager"
NUM_CLASSES = 15


def frames(config_name: str, count: int, seed: int = 0) -> Iterator[torch.Tensor]:
    """``count`` generated frames at the config's size, normalised as the validation transform does
    (made one at a time: 8 MP frames are 100 MB each)."""
    from ssd.config import load_config
    from ssd.data.synth import COGNATA_CLASSES, draw_frame
    from ssd.data.transforms import eval_transform
    from torchvision import tv_tensors

    size = tuple(load_config(config_name).model.image_size)
    transform, rng = eval_transform(size), np.random.default_rng(seed)
    for _ in range(count):
        pixels = torch.from_numpy(draw_frame(rng, *size, COGNATA_CLASSES, (10, 40))[0]).permute(2, 0, 1)
        yield transform(tv_tensors.Image(pixels)).as_subclass(torch.Tensor)


def side(engine: str, config_name: str, folder: Path, count: int) -> None:
    """One engine on the first ``count`` + 1 frames of ``folder``'s ``frames.npy`` (``-int8``: the
    model ``model.int8.onnx``; ``-bf16``: that precision): print a JSON line of latencies,
    detections and peak memory."""
    from ssd.config import load_config
    from ssd.decoding import DecodeSettings
    from ssd.inference import Detector
    from ssd.models import build_model

    config = load_config(config_name)
    settings = asdict(DecodeSettings.mlperf())
    name, _, precision = engine.partition("-")
    if name in ("eager", "detector"):
        torch.manual_seed(0)
        model = build_model(config, NUM_CLASSES).eval()
        plain = name == "eager"
        detector = Detector(model, config, [str(k) for k in range(NUM_CLASSES)], settings=DecodeSettings(**settings), batch_size=1,
                            channels_last=not plain, fold_bn=not plain, precision=precision or "fp32")
    else:
        path = folder / ("model.int8.onnx" if precision == "int8" else "model.onnx")
        detector = Detector.from_onnx(path, config, batch_size=1, device="cpu", engine=name, precision="bf16" if precision == "bf16" else "fp32",
                                      **settings)
    stored = np.load(folder / FRAMES, mmap_mode="r")
    inputs = (torch.from_numpy(np.array(stored[k])) for k in range(count + 1))
    size = tuple(config.model.image_size)
    latencies, detections = [], []
    for k, image in enumerate(inputs):
        start = time.perf_counter()
        (result,) = detector.detect(image[None], [size])
        elapsed = time.perf_counter() - start
        if k:  # the first is the warm-up
            latencies.append(elapsed)
            detections.append(torch.cat([result["boxes"], result["labels"][:, None].float()], dim=1).tolist())
    peak = peak_rss_gib()
    print(json.dumps({"latencies": latencies, "detections": detections, "peak_gib": peak}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--calibration", type=int, default=4, help="generated frames to calibrate the INT8 model on")
    parser.add_argument("--engines", nargs="+", choices=ENGINES, help="engines to run (plain eager always runs; default: all, "
                        "the bf16 ones only on a CPU with native bfloat16)")
    parser.add_argument("--frames-of", nargs="+", default=[], metavar="ENGINE=N", help="another number of frames for these engines")
    parser.add_argument("--config", default="baseline_8MP_ss_scales_fm1_5x5_all")
    parser.add_argument("--work-dir", type=Path, help="keep the exports and frames here, and reuse them (default: a temporary folder)")
    parser.add_argument("--side", choices=ENGINES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side, args.config, args.work_dir, args.frames)
        return
    from roofline import cpu_capabilities, model_flops, peaks

    from ssd.evaluation.agreement import reproduced_fraction

    from ssd.device import native_bf16 as cpu_runs_bf16

    print(f"CPU: {cpu_capabilities()}", flush=True)

    native_bf16 = cpu_runs_bf16()
    chosen = args.engines or [engine for engine in ENGINES if native_bf16 or not engine.endswith("-bf16")]
    if not args.engines and not native_bf16:
        print("bf16 engines skipped: this CPU has no native bfloat16 (no avx512_bf16 or amx_bf16 flag)")
    engines = [engine for engine in ENGINES if engine in chosen or engine == REFERENCE]
    frame_counts = {engine: args.frames for engine in engines}
    for entry in args.frames_of:
        engine, _, count = entry.partition("=")
        if engine not in frame_counts or not count.isdigit():
            raise SystemExit(f"--frames-of {entry}: expected ENGINE=N for one of {', '.join(engines)}")
        frame_counts[engine] = int(count)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.work_dir or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        prepare(folder, args.config, max(frame_counts.values()) + 1, args.calibration if any(e.endswith("-int8") for e in engines) else 0)
        results = {}
        for engine in engines:
            results[engine] = run_side(__file__, ["--side", engine, "--config", args.config, "--work-dir", str(folder), "--frames", str(frame_counts[engine])],
                                       huge_pages=engine != REFERENCE)
            latencies = np.asarray(results[engine]["latencies"])
            print(f"{engine:<17} p50 {np.percentile(latencies, 50):7.2f} s  p99.9 {np.percentile(latencies, 99.9):7.2f} s  "
                  f"over {len(latencies)} frames  peak {results[engine]['peak_gib']:5.2f} GiB", flush=True)
        reference = [_as_results(frame) for frame in results[REFERENCE]["detections"]]
        eager = float(np.percentile(results[REFERENCE]["latencies"], 50))
        flops = model_flops(args.config, NUM_CLASSES)
        peak = peaks(args.config, NUM_CLASSES, sorted({PROBE_OF[engine] for engine in engines}))
        print(f"model: {flops / 1e12:.2f} TFLOP per frame; GFLOP/s below are the model's work over p50 latency (INT8: GOP/s)")
        for engine in engines:
            latency = float(np.percentile(results[engine]["latencies"], 50))
            roofline = (flops / latency / 1e9, peak[PROBE_OF[engine]])
            print(f"{engine:<17} model {roofline[0]:7.1f} GFLOP/s = {roofline[0] / roofline[1]:4.0%} of the {PROBE_OF[engine]} peak "
                  f"({roofline[1]:.1f})", flush=True)
            if engine == REFERENCE:
                continue
            other = [_as_results(frame) for frame in results[engine]["detections"]]
            shared = min(len(reference), len(other))  # every side runs the same frames, from the first
            fraction = reproduced_fraction(reference[:shared], other[:shared])
            print(f"{engine:<17} detections of plain fp32 reproduced (same label, box within 1 px) on {shared} frames: {fraction:.4f}")
            report(f"{args.config} b1 p50 latency, {engine}", latency, eager, "plain eager PyTorch fp32, NCHW, no folding", target=4.0,
                   roofline=roofline)


def prepare(folder: Path, config_name: str, count: int, calibration: int) -> None:
    """The float32 export, the INT8 export (``calibration`` frames; 0: none) and ``count`` frames in
    ``folder``, each made unless there already."""
    from ssd.config import load_config
    from ssd.models import build_model
    from ssd.onnx_export import export_onnx
    from ssd.quantize import export_int8

    torch.manual_seed(0)
    config = load_config(config_name)
    model, size = build_model(config, NUM_CLASSES).eval(), tuple(config.model.image_size)
    if not (folder / "model.onnx").is_file():
        export_onnx(model, size, folder / "model.onnx")
    if calibration and not (folder / "model.int8.onnx").is_file():
        start = time.perf_counter()
        export_int8(model, size, folder / "model.int8.onnx", frames(config_name, calibration, seed=1))
        print(f"INT8 export calibrated on {calibration} frames in {time.perf_counter() - start:.0f} s", flush=True)
    path = folder / FRAMES
    stored_shape = np.load(path, mmap_mode="r").shape if path.is_file() else None
    if stored_shape is None or stored_shape[0] < count or stored_shape[1:] != (3, *size):
        stored = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(count, 3, *size))
        for k, frame in enumerate(frames(config_name, count)):
            stored[k] = frame.numpy()
        stored.flush()


def _as_results(rows: list) -> dict[str, torch.Tensor]:
    """A side's ``[x1, y1, x2, y2, label]`` rows as a detection result."""
    table = torch.tensor(rows, dtype=torch.float64).reshape(-1, 5)
    return {"boxes": table[:, :4], "labels": table[:, 4].long()}

if __name__ == "__main__":
    sys.exit(main())
