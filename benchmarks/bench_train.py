"""Training step throughput: SSD-ResNet50 at 300x300, batch 8, ours against a plain eager step.

Run: .venv/bin/python benchmarks/bench_train.py [--steps 5] [--compile]   (about 2.5 minutes on 2 cores, 3.5 with --compile)

Both sides train the same randomly initialised ``coco_300x300`` model (81 classes) with SGD on the
same batches of random images with 8 boxes each. Each variant runs in a process of its own (the
plain step with PyTorch's default allocator, ours with the huge pages ``ssd`` turns on) and is
compared with a fresh plain process in a round of its own; after one warm-up step each, the two
take turns on each of ``--steps`` batches and the median counts.

- plain eager (the reference's step): NCHW float32 model, targets encoded beforehand (the
  reference encodes in the data workers), the reference's dense loss with two full argsorts,
  ``loss.item()`` for its log line, ``zero_grad()``;
- ours: :func:`ssd.engine.train.train_one_epoch` as ``ssd train`` runs it, channels-last (the
  default), targets encoded on the device inside the step, the gathered loss (its two sizes copied
  to the host while the forward runs), the loss checked one step late, ``zero_grad(set_to_none=True)``,
  freed memory kept in the heap for the next step (``ssd.heap_retention``).

Also reported: ours with ``--amp`` (bfloat16 autocast on the CPU), with ``--compile``,
``torch.compile`` (its compilation, about a minute, is part of the warm-up, not the timed steps),
and, printed only, ours against the plain step with the huge pages ``ssd`` turns on. Each row also
gives the model's GFLOP/s (a step as three forward passes) and its share of this CPU's peak for its
precision, measured in the same run (``roofline.py``).
"""
from __future__ import annotations

from common import SideProcess, report  # first: it turns huge pages on before torch loads
import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch

from reference_impl import reference_encode, reference_loss
from ssd import TargetEncoder, default_boxes, load_config
from ssd.amp import MixedPrecision
from ssd.engine.schedule import WarmupMultiStep, build_scheduler
from ssd.engine.train import TrainingStep, train_one_epoch
from ssd.heap_retention import heap_retention_for
from ssd.models import build_model

CONFIG = "coco_300x300"
NUM_CLASSES = 81
BATCH = 8
BOXES = 8
TARGET = 1.3
BASELINE = "plain eager step: NCHW fp32, reference loss"
Batch = tuple[torch.Tensor, list[dict]]


def make_batches(count: int, size: tuple[int, int], seed: int = 0) -> list[Batch]:
    """``count`` batches of random images and targets (normalised xyxy boxes, labels), as a loader yields them."""
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        images = torch.randn(BATCH, 3, *size, generator=generator)
        targets = []
        for _ in range(BATCH):
            low = torch.rand(BOXES, 2, generator=generator) * 0.7
            boxes = torch.cat((low, low + 0.05 + torch.rand(BOXES, 2, generator=generator) * 0.25), dim=1)
            targets.append({"boxes": boxes, "labels": torch.randint(1, NUM_CLASSES, (BOXES,), generator=generator)})
        batches.append((images, targets))
    return batches


def fresh_model(config, channels_last: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model(config, NUM_CLASSES)
    return model.to(memory_format=torch.channels_last) if channels_last else model


def plain_eager_step(config, anchors: torch.Tensor) -> Callable[[Batch], float]:
    """The reference's training step on a loader batch (its targets encoded beforehand, as in its workers)."""
    model = fresh_model(config, channels_last=False).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4, nesterov=True)
    encoded: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def step(batch: Batch) -> float:
        images, targets = batch
        if id(batch) not in encoded:
            pairs = [reference_encode(anchors, t["boxes"], t["labels"]) for t in targets]
            encoded[id(batch)] = torch.stack([b.t() for b, _ in pairs]), torch.stack([l for _, l in pairs])
        gloc, glabel = encoded[id(batch)]
        start = time.perf_counter()
        ploc, plabel = model(images)
        loss = reference_loss(anchors, ploc, plabel, gloc, glabel)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        loss.item()
        return time.perf_counter() - start

    return step


def our_step(config, anchors: torch.Tensor, precision: str = "fp32", compile_model: bool = False) -> Callable[[Batch], float]:
    """:func:`train_one_epoch` over a one-batch loader: one step of ``ssd train`` (channels-last)."""
    device = torch.device("cpu")
    model = fresh_model(config, channels_last=True)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4, nesterov=True)
    scheduler = build_scheduler(optimizer, WarmupMultiStep([100], 1, 0))
    network = torch.compile(model) if compile_model else model
    training_step = TrainingStep(network, TargetEncoder(anchors), optimizer, MixedPrecision(device, precision), device, scheduler,
                                 channels_last=True)
    after_step = heap_retention_for(device)  # as ssd train hands it to its loops

    def step(batch: Batch) -> float:
        return train_one_epoch(training_step, [batch], epoch=0, show_progress=False, after_step=after_step).seconds

    return step


LABELS = {  # figure, target, reference side
    "ours": (f"train step 300x300 b{BATCH}", TARGET, BASELINE),
    "amp": (f"train step 300x300 b{BATCH}, --amp (bf16)", None, BASELINE + " (fp32)"),
    "compile": (f"train step 300x300 b{BATCH}, --compile", None, BASELINE),
}
VARIANTS: dict[str, Callable[..., Callable[[Batch], float]]] = {
    "plain": plain_eager_step,
    "plain-huge-pages": plain_eager_step,  # the same step with the huge pages ssd turns on
    "ours": our_step,
    "amp": functools.partial(our_step, precision="amp"),
    "compile": functools.partial(our_step, compile_model=True),
}


def serve(variant: str, steps: int) -> None:
    """A side's process: build ``variant``'s step, then time it on each batch index read from stdin."""
    config = load_config(CONFIG)
    step = VARIANTS[variant](config, default_boxes(config))
    batches = make_batches(steps + 1, config.model.image_size)
    for line in sys.stdin:
        print(json.dumps(step(batches[int(line)])), flush=True)


def seconds_per_step(variants: list[str], steps: int) -> dict[str, float]:
    """Median seconds per step of each variant, each in a process of its own, taking turns batch by batch
    after one warm-up step each (which compiles, for ``compile``).

    Taking turns spreads any slow spell of a shared machine over all variants alike. The ``plain``
    process has PyTorch's default allocator, the others the huge pages ``ssd`` turns on.
    """
    sides = {name: SideProcess(__file__, ["--serve", name, "--steps", str(steps)], huge_pages=name != "plain") for name in variants}
    try:
        for side in sides.values():
            side.ask("0")
        times: dict[str, list[float]] = {name: [] for name in sides}
        for index in range(1, steps + 1):
            for name, side in sides.items():
                times[name].append(side.ask(str(index)))
    finally:
        for side in sides.values():
            side.close()
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant (default 5)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (about a minute to compile)")
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.steps)
        return
    config = load_config(CONFIG)
    print(f"{CONFIG}: SSD-ResNet50, {NUM_CLASSES} classes, batch {BATCH}, {default_boxes(config).shape[0]:,} anchors, "
          f"{torch.get_num_threads()} threads", flush=True)
    from roofline import cpu_capabilities, model_flops, peaks

    print(f"CPU: {cpu_capabilities()}", flush=True)
    peak = peaks(CONFIG, NUM_CLASSES, ["torch-fp32", "torch-bf16"], gemm=False)
    step_flop_per_image = 3 * model_flops(CONFIG, NUM_CLASSES)  # forward and backward (roofline.model_flops)
    rounds = [["plain", "ours"], ["plain", "amp"]] + ([["plain", "compile"]] if args.compile else [])
    for variants in rounds:  # pairs: a third process slowed the others by up to 20 % on 2 cores
        seconds = seconds_per_step(variants, args.steps)
        name = variants[1]
        print(f"seconds per step (median): plain {seconds['plain']:.2f}, {name} {seconds[name]:.2f}", flush=True)
        figure, target, baseline = LABELS[name]
        rate = BATCH / seconds[name]
        report(figure, rate, BATCH / seconds["plain"], baseline, unit="img/s", target=target,
               roofline=(rate * step_flop_per_image / 1e9, peak["torch-bf16" if name == "amp" else "torch-fp32"]))
    seconds = seconds_per_step(["plain-huge-pages", "ours"], args.steps)
    print(f"    plain eager with huge pages: {seconds['plain-huge-pages']:.2f} s per step, ours {seconds['ours']:.2f} s "
          f"in the same round ({seconds['plain-huge-pages'] / seconds['ours']:.2f}x)", flush=True)


if __name__ == "__main__":
    main()
