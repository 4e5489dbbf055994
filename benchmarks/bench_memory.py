"""Peak memory and time of one 8 MP training step on the CPU: float32 and bfloat16 autocast, each
activation-checkpointing mode, batch 1 and 2, each in a process of its own.

Run: .venv/bin/python benchmarks/bench_memory.py [--config CONFIG] [--batches 1 2] [--limit-gib 21]

First, for every case, the bytes the step saves for the backward pass are counted on PyTorch's meta
device (shapes only, seconds): the activations. A case whose estimate (activations + weights,
gradients and optimiser state + the largest map's transient copies) exceeds ``--limit-gib`` is
skipped with a note; the others run one SGD step (forward, MultiBoxLoss on ~40 random boxes per
image, backward, update) in a fresh process, which reports its peak resident memory (``VmHWM``, :func:`common.peak_rss_gib`)
and the step's wall time. The reference trains in float32 without checkpointing: its activations
are the float32 "off" case's count, from which the last lines say how many 8 MP images fit on an
80 GB GPU, ours (each mode) against the reference's. Not part of ``make bench``: a float32 case takes
about five minutes on two cores, and bfloat16 is far slower on a CPU without AVX-512 BF16 (it is
emulated); ``--dtypes``, ``--modes`` and ``--batches`` pick cases. Its figures are in docs/performance.md.
"""
from __future__ import annotations

from common import enable_huge_pages, peak_rss_gib  # noqa: F401 (huge pages before torch loads, as the ssd command)

import argparse
import json
import subprocess
import sys
import time

import torch

from ssd import TargetEncoder, default_boxes, load_config
from ssd.amp import MixedPrecision
from ssd.engine.train import TrainingStep
from ssd.models import build_model
from ssd.models.checkpointing import MODES, set_activation_checkpointing

CONFIG = "baseline_8MP_ss_scales_fm1_5x5_all"
NUM_CLASSES = 15
BOXES_PER_IMAGE = 40
GPU_BYTES = 80e9
DTYPES = ("fp32", "bf16")


def _model(config_name: str, mode: str, device: str) -> torch.nn.Module:
    model = build_model(load_config(config_name), NUM_CLASSES).to(device=device, memory_format=torch.channels_last).train()
    set_activation_checkpointing(model, mode)
    return model


def saved_bytes(config_name: str, mode: str, dtype: str, batch: int) -> tuple[int, int]:
    """(bytes saved for backward by the network's forward, bytes of the largest activation) on the meta device.

    bfloat16 is estimated with the network cast to bfloat16 (autocast keeps BatchNorm's statistics in
    float32, a small difference)."""
    config = load_config(config_name)
    model = _model(config_name, mode, "meta")
    images = torch.empty(batch, 3, *config.model.image_size, device="meta").to(memory_format=torch.channels_last)
    if dtype == "bf16":
        model, images = model.to(torch.bfloat16), images.to(torch.bfloat16)
    sizes: list[int] = []
    largest = [0]

    def track(_module, _inputs, output):
        for tensor in output if isinstance(output, tuple) else (output,):
            largest[0] = max(largest[0], tensor.numel() * tensor.element_size())

    hooks = [m.register_forward_hook(track) for m in model.modules() if not list(m.children())]
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel() * t.element_size()) or t, lambda t: t):
        model(images)
    for hook in hooks:
        hook.remove()
    return sum(sizes), largest[0]


def estimate_gib(config_name: str, mode: str, dtype: str, batch: int) -> float:
    """Activations, weights + gradients + momentum (float32), and three copies of the largest activation in flight."""
    activations, largest = saved_bytes(config_name, mode, dtype, batch)
    parameters = sum(p.numel() for p in _model(config_name, "off", "meta").parameters()) * 4 * 3
    return (activations + parameters + 3 * largest) / 2**30


def run_step(config_name: str, mode: str, dtype: str, batch: int) -> dict[str, float]:
    """One SGD training step on random 8 MP images (the child process's job); its peak memory and time."""
    config = load_config(config_name)
    anchors = default_boxes(config)
    model = _model(config_name, mode, "cpu")
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    cpu = torch.device("cpu")
    step = TrainingStep(model, TargetEncoder(anchors), optimizer, MixedPrecision(cpu, dtype), cpu, channels_last=True)
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, *config.model.image_size, generator=generator).contiguous(memory_format=torch.channels_last)
    low = torch.rand(batch, BOXES_PER_IMAGE, 2, generator=generator) * 0.8
    boxes = torch.cat((low, low + 0.02 + torch.rand(batch, BOXES_PER_IMAGE, 2, generator=generator) * 0.15), dim=2)
    labels = torch.randint(1, NUM_CLASSES, (batch, BOXES_PER_IMAGE), generator=generator)
    start = time.perf_counter()
    step(images, [{"boxes": b, "labels": l} for b, l in zip(boxes, labels)])  # ssd train's step, target encoding included
    seconds = time.perf_counter() - start
    return {"peak_gib": peak_rss_gib(), "step_s": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--dtypes", nargs="+", choices=DTYPES, default=list(DTYPES))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--limit-gib", type=float, default=21.0, help="skip cases estimated above this (the machine has 24 GiB)")
    parser.add_argument("--child", nargs=4, metavar=("CONFIG", "MODE", "DTYPE", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        config_name, mode, dtype, batch = args.child
        print(json.dumps(run_step(config_name, mode, dtype, int(batch))), flush=True)
        return

    print(f"one training step at 8 MP on the CPU, {args.config}, {NUM_CLASSES} classes, SGD, channels-last\n")
    print("| precision | checkpointing | batch | activations (est.) | peak RSS | step time |")
    print("|---|---|---|---|---|---|")
    measured: dict[tuple[str, str, int], dict[str, float]] = {}
    for dtype in args.dtypes:
        for mode in args.modes:
            for batch in args.batches:
                activations = saved_bytes(args.config, mode, dtype, batch)[0] / 2**30
                estimate = estimate_gib(args.config, mode, dtype, batch)
                row = f"| {dtype} | {mode} | {batch} | {activations:.1f} GiB"
                if estimate > args.limit_gib:
                    print(f"{row} | skipped: estimated {estimate:.1f} GiB > {args.limit_gib:g} | |", flush=True)
                    continue
                done = subprocess.run([sys.executable, __file__, "--child", args.config, mode, dtype, str(batch)],
                                      capture_output=True, text=True)
                if done.returncode != 0:
                    print(f"{row} | failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]} | |", flush=True)
                    continue
                result = measured[(dtype, mode, batch)] = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{row} | {result['peak_gib']:.1f} GiB | {result['step_s']:.1f} s |", flush=True)

    for dtype in args.dtypes:
        for batch in args.batches:
            plain, backbone, everything = (measured.get((dtype, mode, batch)) for mode in ("off", "backbone", "all"))
            if plain:
                for name, case in (("backbone", backbone), ("all", everything)):
                    if case:
                        print(f"{dtype} batch {batch}: checkpointing {name} takes {case['step_s'] / plain['step_s']:.2f}x the plain step's time")
    reference = saved_bytes(args.config, "off", "fp32", 1)[0]
    print(f"\nactivations per 8 MP image: reference (float32, no checkpointing) {reference / 2**30:.1f} GiB")
    for dtype in DTYPES:
        for mode in MODES:
            ours = saved_bytes(args.config, mode, dtype, 1)[0]
            print(f"  ours {dtype} {mode}: {ours / 2**30:.2f} GiB -> {int(GPU_BYTES // ours)} images per 80 GB GPU "
                  f"(reference: {int(GPU_BYTES // reference)})")


if __name__ == "__main__":
    main()
