"""One-shot GPU check: what the first GPU run must measure and confirm, in one script, within minutes.

Run: .venv/bin/python benchmarks/gpu_check.py [--out gpu_check.json] [--budget-s 480]   (``make gpu-check``)
     .venv/bin/python benchmarks/gpu_check.py --dry-run   (the same code on the CPU with a tiny config; CI runs it)

On one CUDA GPU and the MLPerf config (2160x3840, 15 classes) it measures and prints a Markdown table,
and writes the same as JSON:

1. Training: images/s and peak GPU memory (``torch.cuda.max_memory_allocated``) for fp32, AMP fp16,
   AMP bf16, AMP + channels-last, + ``torch.compile``, with and without activation checkpointing,
   each at the largest batch that fits (found by doubling); model FLOP utilisation = mult-adds x 2 x 3
   per image x images/s / the GPU's dense peak for the step's precision (:data:`PEAK_TFLOPS`).
2. Inference at batch 1: latency p50 / p99 over 50 frames (forward + decoding), fp32 / fp16 / bf16,
   channels-last.
3. DDP over NCCL: 5 steps in one process, and in two when two GPUs are visible.
4. The largest host-side stall of a profiled training step (data to device, target encoding, host
   syncs, decoding), named.
5. The GPU review's items, confirmed on the device: decoding equal on the GPU and the CPU with a far-out
   box among thousands of candidates; the fused optimiser stepping under the fp16 scaler; targets
   encoded on the GPU equal to the CPU's, bitwise; LoadGen samples staged on the GPU; cuDNN's
   algorithm search on; ONNX Runtime on CUDA with IO binding (when onnxruntime-gpu is installed).

Sections run in the order 5, 2, 1, 3, 4 and stop when ``--budget-s`` is spent (the rest are marked
"not run"); an error in one section is recorded and the next one runs. The dry run takes one timed
step per case and leaves out the compiled training rows (minutes of compiling on a CPU).
"""
from __future__ import annotations

from common import enable_huge_pages  # noqa: F401 (as the ssd command, before torch loads)

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ssd import TargetEncoder, default_boxes, load_config
from ssd.amp import MixedPrecision
from ssd.config import Config
from ssd.decoding import DecodeSettings
from ssd.device import configure_cudnn, stage_on_device
from ssd.engine.schedule import build_optimizer
from ssd.engine.train import TrainingStep
from ssd.models import build_model
from ssd.models.checkpointing import set_activation_checkpointing
from ssd.summary import summarize

MLPERF_CONFIG = "baseline_8MP_ss_scales_fm1_5x5_all"
NUM_CLASSES = 15
# dense peak TFLOP/s by device-name fragment: (fp32 without TF32, fp16/bf16 tensor cores); vendors' data sheets
PEAK_TFLOPS = {
    "H200": (67.0, 989.0), "H100": (67.0, 989.0), "A100": (19.5, 312.0), "L40S": (91.6, 362.0),
    "L4": (30.3, 121.0), "A10": (31.2, 125.0), "V100": (15.7, 125.0), "RTX 4090": (82.6, 165.0),
}
TRAINING_VARIANTS = (  # (name, precision, channels-last, compile)
    ("fp32", "fp32", False, False),
    ("AMP fp16", "fp16", False, False),
    ("AMP bf16", "bf16", False, False),
    ("AMP bf16 + channels-last", "bf16", True, False),
    ("AMP bf16 + channels-last + compile", "bf16", True, True),
)


class Check:
    """The device, the config and the time budget the sections share, and the results they record."""

    def __init__(self, dry_run: bool, budget_s: float):
        self.dry_run = dry_run
        self.device = torch.device("cpu" if dry_run else "cuda")
        self.deadline = time.monotonic() + budget_s
        self.config = self._config()
        self.anchors = default_boxes(self.config).to(self.device)
        self.results: dict[str, object] = {"device": self.device_name, "config": self.config.name, "dry_run": dry_run}

    def _config(self) -> Config:
        if not self.dry_run:
            return load_config(MLPERF_CONFIG)
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from support import TINY_YAML

        path = Path(tempfile.mkdtemp()) / "tiny.yaml"
        path.write_text(TINY_YAML.replace("image_size: [64, 128]", "image_size: [32, 64]"))  # a path check: the smallest input it takes
        return load_config(path)

    @property
    def device_name(self) -> str:
        return torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "CPU (dry run)"

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def peak_memory_gib(self) -> float:
        return torch.cuda.max_memory_allocated(self.device) / 2**30 if self.device.type == "cuda" else float("nan")

    def reset_peak(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)

    def batch(self, size: int, channels_last: bool) -> tuple[torch.Tensor, list[dict]]:
        """Random images and ~40 random boxes each (a training step's batch), on the device."""
        generator = torch.Generator().manual_seed(size)
        images = torch.randn(size, 3, *self.config.model.image_size, generator=generator).to(self.device)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        low = torch.rand(size, 40, 2, generator=generator) * 0.8
        boxes = torch.cat((low, low + 0.02 + torch.rand(size, 40, 2, generator=generator) * 0.15), dim=2).to(self.device)
        labels = torch.randint(1, NUM_CLASSES, (size, 40), generator=generator).to(self.device)
        return images, [{"boxes": b, "labels": l} for b, l in zip(boxes, labels)]

    def training_step(self, network, optimizer, precision: str, channels_last: bool) -> TrainingStep:
        """``ssd train``'s step of ``network`` (the model or its wrapper) on this check's device."""
        return TrainingStep(network, TargetEncoder(self.anchors), optimizer, MixedPrecision(self.device, precision), self.device,
                            channels_last=channels_last)

    def section(self, name: str, run: Callable[[], object]) -> None:
        if time.monotonic() > self.deadline:
            self.results[name] = "not run: time budget spent"
            return
        start = time.monotonic()
        try:
            self.results[name] = run()
        except Exception as exc:  # a section's failure is a finding; the next section still runs
            self.results[name] = f"error: {type(exc).__name__}: {exc}"
        print(f"[{name}: {time.monotonic() - start:.0f} s]", file=sys.stderr, flush=True)


# -- 1. training -----------------------------------------------------------------------------------
def measure_training(check: Check, precision: str, channels_last: bool, compile_: bool, checkpointing: str) -> dict:
    """Images/s at the largest batch that fits (doubling from 1), and that batch's peak memory."""
    model = build_model(check.config, NUM_CLASSES).to(check.device).train()
    set_activation_checkpointing(model, checkpointing)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    network = torch.compile(model) if compile_ else model
    optimizer = build_optimizer(model, lr=1e-4, momentum=0.9, weight_decay=5e-4, no_decay_bn=False, fused=check.device.type == "cuda")
    training_step = check.training_step(network, optimizer, precision, channels_last)
    best, size, limit = None, 1, 1 if check.dry_run else 64
    while size <= limit and time.monotonic() < check.deadline:
        try:
            check.reset_peak()
            images, targets = check.batch(size, channels_last)
            if not check.dry_run:  # a dry run checks the path, in one step: its figures mean nothing
                training_step(images, targets)  # warm-up (and compilation)
            check.synchronize()
            steps = 1 if check.dry_run else 5
            start = time.perf_counter()
            for _ in range(steps):
                training_step(images, targets)
            check.synchronize()
            seconds = (time.perf_counter() - start) / steps
            best = {"batch": size, "images_per_s": size / seconds, "peak_gib": check.peak_memory_gib()}
        except torch.OutOfMemoryError:
            break
        finally:
            images = targets = None
        size *= 2
    if best is None:
        raise RuntimeError("batch 1 does not fit")
    return best


def training(check: Check) -> list[dict]:
    mult_adds = summarize(check.config, NUM_CLASSES, batch_size=1).mult_adds
    peaks = next((v for k, v in PEAK_TFLOPS.items() if k in check.device_name), None)
    rows = []
    for name, precision, channels_last, compile_ in TRAINING_VARIANTS:
        for checkpointing in ("off", "all"):
            if compile_ and check.dry_run:  # minutes of compiling on the CPU; the GPU run measures it
                rows.append({"variant": name, "checkpointing": checkpointing, "result": "not in a dry run"})
                continue
            if time.monotonic() > check.deadline:
                rows.append({"variant": name, "checkpointing": checkpointing, "result": "not run: time budget spent"})
                continue
            try:
                row = measure_training(check, precision, channels_last, compile_, checkpointing)
            except Exception as exc:  # recorded per row
                row = {"result": f"error: {type(exc).__name__}: {exc}"}
            if "images_per_s" in row and peaks is not None:
                peak = peaks[1] if precision != "fp32" else peaks[0]
                row["mfu"] = mult_adds * 2 * 3 * row["images_per_s"] / (peak * 1e12)
            rows.append({"variant": name, "checkpointing": checkpointing, **row})
    return rows


# -- 2. inference --------------------------------------------------------------------------------
def inference(check: Check) -> list[dict]:
    frames = 3 if check.dry_run else 50
    model = build_model(check.config, NUM_CLASSES).to(check.device).eval().to(memory_format=torch.channels_last)
    settings = DecodeSettings.mlperf()
    image = torch.randn(1, 3, *check.config.model.image_size, device=check.device).contiguous(memory_format=torch.channels_last)
    rows = []
    for dtype in ("fp32", "fp16", "bf16"):
        if dtype == "fp16" and check.device.type == "cpu":
            continue  # CPU fp16 convolutions are not what this section measures
        autocast = torch.autocast(check.device.type, dtype=torch.float16 if dtype == "fp16" else torch.bfloat16, enabled=dtype != "fp32")
        latencies = []
        with torch.inference_mode(), autocast:
            for k in range(frames + 2):
                start = time.perf_counter()
                locs, confs = model(image)
                settings.decode(locs, confs, check.anchors, [tuple(check.config.model.image_size)])
                check.synchronize()
                if k >= 2:  # two warm-up frames
                    latencies.append(time.perf_counter() - start)
        latencies.sort()
        rows.append({"dtype": dtype, "p50_ms": 1e3 * statistics.median(latencies), "p99_ms": 1e3 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]})
    return rows


# -- 3. DDP ---------------------------------------------------------------------------------------
def _ddp_worker(rank: int, world_size: int, config_path: str, dry_run: bool, port: int, out: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    backend = "gloo" if dry_run else "nccl"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    device = torch.device("cpu") if dry_run else torch.device("cuda", rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    config = load_config(config_path)
    model = build_model(config, NUM_CLASSES).to(device).train()
    network = DistributedDataParallel(model, device_ids=[rank] if device.type == "cuda" else None)
    optimizer = build_optimizer(model, lr=1e-4, momentum=0.9, weight_decay=5e-4, no_decay_bn=False, fused=device.type == "cuda")
    step = TrainingStep(network, TargetEncoder(default_boxes(config).to(device)), optimizer,
                        MixedPrecision(device, "fp32" if dry_run else "amp"), device)
    images = torch.randn(1, 3, *config.model.image_size, device=device)
    targets = [{"boxes": torch.tensor([[0.1, 0.1, 0.4, 0.5]], device=device), "labels": torch.tensor([3], device=device)}]
    start = time.perf_counter()
    for _ in range(5):
        step(images, targets)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if rank == 0:
        Path(out).write_text(json.dumps({"processes": world_size, "backend": backend, "s_per_step": (time.perf_counter() - start) / 5}))
    dist.destroy_process_group()


def ddp(check: Check) -> list[dict]:
    import torch.multiprocessing as mp

    config_path = str(check.config.source)
    counts = [1] + ([2] if check.device.type == "cuda" and torch.cuda.device_count() >= 2 else [])
    rows = []
    for world_size in counts:
        out = Path(tempfile.mkdtemp()) / "ddp.json"
        mp.spawn(_ddp_worker, args=(world_size, config_path, check.dry_run, 29600 + world_size, str(out)), nprocs=world_size)
        rows.append(json.loads(out.read_text()))
    return rows


# -- 4. host-side stalls --------------------------------------------------------------------------
def stalls(check: Check) -> dict:
    """Profile two training steps (batch 1, AMP, channels-last) and name the host-side work that took longest."""
    from torch.profiler import ProfilerActivity, profile

    model = build_model(check.config, NUM_CLASSES).to(check.device).train().to(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, lr=1e-4, momentum=0.9, weight_decay=5e-4, no_decay_bn=False, fused=check.device.type == "cuda")
    training_step = check.training_step(model, optimizer, "amp", channels_last=True)
    images, targets = check.batch(1, True)
    training_step(images, targets)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if check.device.type == "cuda" else [])
    host_work = ("aten::item", "aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize",
                 "cudaMemcpy", "aten::copy_", "aten::nonzero", "torchvision::nms")
    with profile(activities=activities) as trace:
        for _ in range(2):
            images, targets = check.batch(1, True)  # data to the device and target encoding inside the trace
            training_step(images, targets)
        check.synchronize()
    events = [e for e in trace.key_averages() if any(e.key.startswith(name) for name in host_work)]
    events.sort(key=lambda e: e.self_cpu_time_total, reverse=True)
    return {"largest": [{"name": e.key, "host_ms": e.self_cpu_time_total / 1e3, "calls": e.count} for e in events[:3]]}


# -- 5. the GPU review's items on the device ------------------------------------------------------
def review(check: Check) -> dict:
    from ssd.decoding import postprocess

    found: dict[str, object] = {}
    generator = torch.Generator().manual_seed(0)
    count = check.anchors.shape[0]
    locs = torch.randn(4, 4, count, generator=generator) * 0.3
    confs = torch.randn(4, NUM_CLASSES, count, generator=generator) * 3
    locs[0, :, 0] = torch.tensor([3e4, 3e4, 1.0, 1.0])  # one far-out box among the candidates
    on_cpu = postprocess(locs, confs, check.anchors.cpu(), max_detections=500)
    on_device = postprocess(locs.to(check.device), confs.to(check.device), check.anchors, max_detections=500)
    found["decoding equal on device and CPU (far-out box, batch 4)"] = all(
        torch.equal(a[key].cpu(), b[key]) for a, b in zip(on_device, on_cpu) for key in ("labels", "scores")
    ) and all(torch.allclose(a["boxes"].cpu(), b["boxes"], atol=1e-4) for a, b in zip(on_device, on_cpu))

    box = torch.tensor([[0.1, 0.2, 0.4, 0.6], [0.5, 0.5, 0.9, 0.8]])
    cpu_targets = TargetEncoder(check.anchors.cpu())(box, torch.tensor([1, 2]))
    device_targets = TargetEncoder(check.anchors)(box.to(check.device), torch.tensor([1, 2], device=check.device))
    found["targets on device equal the CPU's, bitwise"] = all(torch.equal(a.cpu(), b) for a, b in zip(device_targets, cpu_targets))

    model = torch.nn.Linear(8, 8).to(check.device)
    optimizer = build_optimizer(model, lr=0.1, momentum=0.9, weight_decay=0.0, no_decay_bn=False, fused=check.device.type == "cuda")
    precision = MixedPrecision(check.device, "fp16")
    before = model.weight.detach().clone()
    with precision.autocast():
        loss = model(torch.randn(4, 8, device=check.device)).float().square().mean()
    precision.backward_and_step(loss, optimizer)
    found["fused optimiser steps under the fp16 scaler"] = bool(optimizer.defaults.get("fused")) == (check.device.type == "cuda") and not torch.equal(before, model.weight)

    staged = stage_on_device(torch.zeros(3, 8, 8), check.device)
    found["LoadGen sample staged on the device"] = staged.device.type == check.device.type
    configure_cudnn(check.device, True)
    found["cudnn.benchmark on (CUDA)"] = torch.backends.cudnn.benchmark if check.device.type == "cuda" else "n/a on the CPU"
    found["ONNX Runtime on CUDA with IO binding"] = onnx_on_device(check)
    return found


def onnx_on_device(check: Check) -> object:
    import onnxruntime

    from ssd.onnx_export import OnnxNetwork, export_onnx

    wants = "cuda" if check.device.type == "cuda" else "cpu"
    if wants == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return "onnxruntime-gpu not installed: not checked"
    config = check.config
    model = build_model(config, NUM_CLASSES).eval()
    path = Path(tempfile.mkdtemp()) / "model.onnx"
    export_onnx(model, config.model.image_size, path)
    network = OnnxNetwork(path, wants)
    images = torch.randn(1, 3, *config.model.image_size)
    with torch.inference_mode():
        expected = model(images)
    locs, confs = network(images.to(check.device))
    return {"device": network.device, "outputs_on": locs.device.type,
            "max_difference": max(float((a.cpu() - e).abs().max()) for a, e in zip((locs, confs), expected))}


# -- the report -----------------------------------------------------------------------------------
def markdown(results: dict) -> str:
    lines = [f"GPU check on {results['device']}, config {results['config']}", ""]
    rows = results.get("training")
    if isinstance(rows, list):
        lines += ["| training | checkpointing | batch | images/s | peak GiB | MFU |", "|---|---|---|---|---|---|"]
        for row in rows:
            if "images_per_s" in row:
                mfu = f"{100 * row['mfu']:.0f} %" if "mfu" in row else "n/a"
                lines.append(f"| {row['variant']} | {row['checkpointing']} | {row['batch']} | {row['images_per_s']:.2f} | {row['peak_gib']:.1f} | {mfu} |")
            else:
                lines.append(f"| {row['variant']} | {row['checkpointing']} | {row['result']} | | | |")
        lines.append("")
    for name in ("inference", "ddp", "stalls", "review"):
        lines.append(f"- {name}: {json.dumps(results.get(name), default=str)}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="run every section on the CPU with a tiny config (no GPU needed)")
    parser.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    parser.add_argument("--budget-s", type=float, default=480.0, help="stop starting sections and batch sizes after this many seconds")
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU visible (use --dry-run to check the script on the CPU)", file=sys.stderr)
        return 2
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    check = Check(args.dry_run, args.budget_s)
    for name, run in (("review", review), ("inference", inference), ("training", training), ("ddp", ddp), ("stalls", stalls)):
        check.section(name, lambda run=run: run(check))
    print(markdown(check.results))
    args.out.write_text(json.dumps(check.results, indent=1, default=str))
    errors = [name for name, value in check.results.items() if isinstance(value, str) and value.startswith("error")]
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
