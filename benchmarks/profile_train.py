"""Where one training epoch on synthetic 8 MP Cognata frames spends its time, by torch.profiler.

Run: .venv/bin/python benchmarks/profile_train.py [--frames 4] [--no-channels-last] [--no-amp] [--compile] [--trace trace.json]

Writes ``--frames`` synthetic 2160x3840 frames (about 40 objects each), then runs one epoch of
:func:`ssd.engine.train.train_one_epoch` with batch 1 on the CPU -- the MLPerf config, the
reference's SSD augmentation, one loader worker, targets encoded on the training device, as
``ssd train`` does -- under ``torch.profiler``. Prints the epoch's wall time split into the phases
the step labels (waiting for the loader, encoding, forward, loss, backward + optimiser step) and
the operators with the most time of their own. ``--amp`` (bfloat16 autocast, the default here) is
needed at 8 MP on a 24 GiB machine: a float32 step needs more than 20 GiB at batch 1.
Not part of ``make bench`` (several minutes per run). ``THP_MEM_ALLOC_ENABLE=0`` in the environment
profiles without huge pages (see ``ssd.huge_pages``).
"""
from __future__ import annotations

from ssd.huge_pages import enable_huge_pages

enable_huge_pages()  # as the ssd command does, before torch loads

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from ssd import TargetEncoder, default_boxes, huge_pages, load_config  # noqa: E402
from ssd.amp import MixedPrecision
from ssd.data import build_loader
from ssd.data.cognata import CognataDataset
from ssd.data.synth import COGNATA_CAMERA, COGNATA_SCENARIO, synth_cognata
from ssd.data.transforms import train_transform
from ssd.engine.schedule import WarmupMultiStep, build_optimizer, build_scheduler
from ssd.engine.train import TrainingStep, train_one_epoch
from ssd.heap_retention import heap_retention_for
from ssd.models import build_model

CONFIG = "baseline_8MP_ss_scales_fm1_5x5_all"
LOADER_WAIT = "enumerate(DataLoader)"
PHASES = {
    LOADER_WAIT: "waiting for the data loader",
    "ssd.encode_targets": "batch to device + target encoding",
    "ssd.forward": "forward",
    "ssd.loss": "loss",
    "ssd.backward_step": "backward + optimiser step",
}


def phase_seconds(events) -> dict[str, float]:
    """Seconds spent in each labelled phase (the loader's ``__next__`` events count as waiting for data)."""
    seconds = dict.fromkeys(PHASES, 0.0)
    for event in events:
        key = LOADER_WAIT if event.key.startswith(LOADER_WAIT) else event.key
        if key in seconds:
            seconds[key] += event.cpu_time_total / 1e6
    return seconds


def step_seconds(events) -> list[float]:
    """Seconds of each step's labelled phases (encoding to optimiser step), in order."""
    phases = [event for event in events if event.name in PHASES and event.name != LOADER_WAIT]
    steps = [0.0] * sum(event.name == "ssd.forward" for event in phases)
    counts = dict.fromkeys(PHASES, 0)
    for event in phases:
        steps[counts[event.name]] += event.cpu_time_total / 1e6
        counts[event.name] += 1
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=4, help="frames in the epoch (batch 1)")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--amp", action=argparse.BooleanOptionalAction, default=True, help="bfloat16 autocast (default)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (compiles in the first step)")
    parser.add_argument("--workers", type=int, default=1, help="data loader workers")
    parser.add_argument("--trace", type=Path, help="also write a Chrome trace (chrome://tracing, Perfetto)")
    args = parser.parse_args()

    config = load_config(CONFIG)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as folder:
        synth_cognata(folder, args.frames, size=config.model.image_size, seed=0, objects=(40, 40))
        dataset = CognataDataset(
            folder, "all", folders=[COGNATA_SCENARIO], cameras=[COGNATA_CAMERA], transform=train_transform(config.model.image_size)
        )
        loader = build_loader(dataset, 1, train=True, num_workers=args.workers, pin_memory=False)
        torch.manual_seed(0)
        model = build_model(config, dataset.num_classes)
        if args.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = build_optimizer(model, 2.6e-3 / 32, 0.9, 5e-4, no_decay_bn=False)
        scheduler = build_scheduler(optimizer, WarmupMultiStep([43, 54], len(loader), 0))
        print(f"{CONFIG}: {len(dataset)} frames 2160x3840, batch 1, channels-last {args.channels_last}, amp {args.amp}, "
              f"compile {args.compile}, huge pages {os.environ[huge_pages.ENV]!r}, {args.workers} worker(s), {torch.get_num_threads()} threads", flush=True)
        network = torch.compile(model) if args.compile else model
        with profile(activities=[ProfilerActivity.CPU]) as profiler:
            step = TrainingStep(network, TargetEncoder(default_boxes(config)), optimizer, MixedPrecision(device, "amp" if args.amp else "fp32"),
                                device, scheduler, channels_last=args.channels_last)
            stats = train_one_epoch(step, loader, 0, show_progress=False, after_step=heap_retention_for(device))
    events = profiler.key_averages()
    seconds = phase_seconds(events)
    print(f"\nepoch: {stats.images} images in {stats.seconds:.1f} s ({stats.seconds / stats.images:.1f} s per image)")
    for key, label in PHASES.items():
        print(f"  {label:<36} {seconds[key]:8.1f} s  {100 * seconds[key] / stats.seconds:5.1f} %")
    rest = stats.seconds - sum(seconds.values())
    print(f"  {'other (bookkeeping, progress)':<36} {rest:8.1f} s  {100 * rest / stats.seconds:5.1f} %")
    steps = step_seconds(profiler.events())
    if len(steps) > 1:
        print(f"  per step: first {steps[0]:.1f} s (warm-up{', compilation' if args.compile else ''}), "
              f"median of the other {len(steps) - 1}: {statistics.median(steps[1:]):.1f} s")
    operators = sorted((e for e in events if e.key.startswith("aten::")), key=lambda e: e.self_cpu_time_total, reverse=True)
    print("\noperators by their own time:")
    for event in operators[:10]:
        print(f"  {event.key:<36} {event.self_cpu_time_total / 1e6:8.1f} s  {100 * event.self_cpu_time_total / 1e6 / stats.seconds:5.1f} %"
              f"  ({event.count} calls)")
    if args.trace:
        profiler.export_chrome_trace(str(args.trace))
        print(f"trace written to {args.trace}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"done in {time.perf_counter() - start:.0f} s")
