"""8 MP latency on the CPU, one engine against another: plain eager PyTorch fp32, our ``Detector``
(channels-last, BatchNorm folded), ONNX Runtime and OpenVINO on our export (``--backend``).

Each engine runs in a process of its own on the same generated frames, already preprocessed (the
MLPerf harness's preprocessed arrays), batch 1, forward and decoding with MLPerf's settings: latency
p50 and p99.9 over ``--frames`` frames after one warm-up, peak resident memory, and the fraction of
the plain fp32 run's detections each engine reproduces (same label, every box side within 1 px).
The weights are randomly initialised (seeded), the same for every engine.

Run: .venv/bin/python benchmarks/bench_cpu_backends.py [--frames 20] [--config baseline_8MP_ss_scales_fm1_5x5_all]
"""
from __future__ import annotations

from common import report, run_side  # first: it turns huge pages on before torch loads

import argparse
import json
import resource
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

ENGINES = ("eager", "detector", "onnxruntime", "openvino")
NUM_CLASSES = 15


def frames(config_name: str, count: int) -> Iterator[torch.Tensor]:
    """``count`` generated frames at the config's size, normalised as the validation transform does
    (made one at a time: 8 MP frames are 100 MB each)."""
    from ssd.config import load_config
    from ssd.data.synth import COGNATA_CLASSES, draw_frame
    from ssd.data.transforms import eval_transform
    from torchvision import tv_tensors

    size = tuple(load_config(config_name).model.image_size)
    transform, rng = eval_transform(size), np.random.default_rng(0)
    for _ in range(count):
        pixels = torch.from_numpy(draw_frame(rng, *size, COGNATA_CLASSES, (10, 40))[0]).permute(2, 0, 1)
        yield transform(tv_tensors.Image(pixels)).as_subclass(torch.Tensor)


def side(engine: str, config_name: str, onnx_path: str, count: int) -> None:
    """One engine: print a JSON line of latencies, detections and peak memory."""
    from ssd.config import load_config
    from ssd.decoding import DecodeSettings
    from ssd.inference import Detector
    from ssd.models import build_model

    config = load_config(config_name)
    settings = asdict(DecodeSettings.mlperf())
    if engine in ("eager", "detector"):
        torch.manual_seed(0)
        model = build_model(config, NUM_CLASSES).eval()
        plain = engine == "eager"
        detector = Detector(model, config, [str(k) for k in range(NUM_CLASSES)], settings=DecodeSettings(**settings), batch_size=1,
                            channels_last=not plain, fold_bn=not plain)
    else:
        detector = Detector.from_onnx(onnx_path, config, batch_size=1, device="cpu", engine=engine, **settings)
    inputs = frames(config_name, count + 1)
    size = tuple(config.model.image_size)
    latencies, detections = [], []
    for k, image in enumerate(inputs):
        start = time.perf_counter()
        (result,) = detector.detect(image[None], [size])
        elapsed = time.perf_counter() - start
        if k:  # the first is the warm-up
            latencies.append(elapsed)
            detections.append(torch.cat([result["boxes"], result["labels"][:, None].float()], dim=1).tolist())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"latencies": latencies, "detections": detections, "peak_gib": peak}))


def matched_fraction(reference: list, other: list) -> float:
    """Of the reference's detections, the fraction another run has too (same label, sides within 1 px)."""
    total = found = 0
    for ref_frame, other_frame in zip(reference, other):
        ref, oth = np.asarray(ref_frame).reshape(-1, 5), np.asarray(other_frame).reshape(-1, 5)
        total += len(ref)
        if len(ref) and len(oth):
            close = (np.abs(ref[:, None, :4] - oth[None, :, :4]).max(axis=2) <= 1.0) & (ref[:, None, 4] == oth[None, :, 4])
            found += int(close.any(axis=1).sum())
    return found / total if total else 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--config", default="baseline_8MP_ss_scales_fm1_5x5_all")
    parser.add_argument("--side", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--onnx", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side, args.config, args.onnx, args.frames)
        return
    from ssd.config import load_config
    from ssd.models import build_model
    from ssd.onnx_export import export_onnx

    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        config = load_config(args.config)
        onnx_path = export_onnx(build_model(config, NUM_CLASSES).eval(), tuple(config.model.image_size), Path(folder) / "model.onnx")
        results = {}
        for engine in ENGINES:
            results[engine] = run_side(__file__, ["--side", engine, "--config", args.config, "--onnx", str(onnx_path), "--frames", str(args.frames)],
                                       huge_pages=engine != "eager")
            latencies = np.asarray(results[engine]["latencies"])
            print(f"{engine:<12} p50 {np.percentile(latencies, 50):7.2f} s  p99.9 {np.percentile(latencies, 99.9):7.2f} s  "
                  f"peak {results[engine]['peak_gib']:5.2f} GiB  detections of plain fp32 reproduced "
                  f"{matched_fraction(results['eager']['detections'], results[engine]['detections']):.4f}", flush=True)
        eager = float(np.percentile(results["eager"]["latencies"], 50))
        for engine in ENGINES[1:]:
            report(f"{args.config} b1 p50 latency, {engine}", float(np.percentile(results[engine]["latencies"], 50)), eager,
                   "plain eager PyTorch fp32, NCHW, no folding")


if __name__ == "__main__":
    sys.exit(main())
