"""Memory allocators side by side: ``ssd``'s own policy (glibc kept by ``ssd.heap_retention``, huge pages by
``ssd.huge_pages``) against glibc's defaults, jemalloc and tcmalloc loaded with ``LD_PRELOAD``.

Two workloads, each variant in a process of its own (an allocator is chosen when a process starts):

- ``train``: the 300x300 SSD-ResNet50 training step at batch 8 (``ssd.engine.train.TrainingStep``, as
  ``ssd train`` runs it), median of ``--steps`` steps after one warm-up;
- ``infer``: the 8 MP inference loop, the MLPerf config's forward pass at batch 1 under
  ``torch.inference_mode`` (as ``Detector`` runs it), median of ``--passes`` after one warm-up.

jemalloc runs with the ``MALLOC_CONF`` of PyTorch's CPU performance advice, tcmalloc with its defaults;
neither with ``ssd``'s policies. Debian's ``libjemalloc2`` and ``libgoogle-perftools4`` must be installed;
a missing library is reported and its variant skipped. The rounds alternate the order of the variants.

    .venv/bin/python benchmarks/bench_allocators.py [--workloads train infer] [--steps 5] [--passes 2] [--rounds 2]
"""
from __future__ import annotations

from common import peak_rss_gib, report  # first: it turns huge pages on before torch loads
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

LIBRARIES = Path("/usr/lib/x86_64-linux-gnu")
JEMALLOC_CONF = "oversize_threshold:1,background_thread:true,metadata_thp:auto,dirty_decay_ms:9000000000,muzzy_decay_ms:9000000000"
VARIANTS = {  # name -> (library to preload or None, extra environment, ssd's policies on)
    "ssd": (None, {}, True),
    "glibc": (None, {}, False),
    "jemalloc": ("libjemalloc.so.2", {"MALLOC_CONF": JEMALLOC_CONF}, False),
    "tcmalloc": ("libtcmalloc.so.4", {}, False),
}


def side(variant: str, workload: str, repeats: int) -> None:
    """One variant's workload in this process; prints ``{"seconds": [...]}``."""
    import torch

    from ssd import TargetEncoder, default_boxes, load_config
    from ssd.amp import MixedPrecision
    from ssd.engine.train import TrainingStep
    from ssd.heap_retention import heap_retention_for, no_step_hook
    from ssd.models import build_model

    device = torch.device("cpu")
    after_step = heap_retention_for(device) if VARIANTS[variant][2] else no_step_hook
    torch.manual_seed(0)
    times = []
    if workload == "train":
        from bench_train import BATCH, CONFIG, NUM_CLASSES, make_batches

        config = load_config(CONFIG)
        model = build_model(config, NUM_CLASSES).to(memory_format=torch.channels_last).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        step = TrainingStep(model, TargetEncoder(default_boxes(config.model)), optimizer, MixedPrecision(device, "fp32"), device,
                            channels_last=True)
        batches = make_batches(repeats + 1, config.model.image_size)
        for k, (images, targets) in enumerate(batches):
            start = time.perf_counter()
            step(images, targets)
            after_step()
            if k:
                times.append(time.perf_counter() - start)
        print(json.dumps({"seconds": times, "batch": BATCH, "peak_gib": peak_rss_gib()}))
        return
    config = load_config("baseline_8MP_ss_scales_fm1_5x5_all")
    model = build_model(config, 15).to(memory_format=torch.channels_last).eval()
    image = torch.randn(1, 3, *config.model.image_size).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        for k in range(repeats + 1):
            start = time.perf_counter()
            model(image)
            after_step()
            if k:
                times.append(time.perf_counter() - start)
    print(json.dumps({"seconds": times, "peak_gib": peak_rss_gib()}))


def run_variant(variant: str, workload: str, repeats: int) -> tuple[float, float] | None:
    """The median seconds and the peak resident GiB of ``variant`` in a fresh process, or None when its library is missing."""
    library, extra, policies = VARIANTS[variant]
    env = {**os.environ, **extra, "THP_MEM_ALLOC_ENABLE": "1" if policies else "0"}
    if library is not None:
        if not (LIBRARIES / library).is_file():
            print(f"{variant}: {LIBRARIES / library} is not installed (Debian: libjemalloc2, libgoogle-perftools4); skipped")
            return None
        env["LD_PRELOAD"] = str(LIBRARIES / library)
    done = subprocess.run([sys.executable, __file__, "--side", variant, workload, str(repeats)], env=env, capture_output=True, text=True,
                          check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return statistics.median(result["seconds"]), result["peak_gib"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", nargs="+", choices=("train", "infer"), default=["train", "infer"])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--passes", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--side", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side[0], args.side[1], int(args.side[2]))
        return
    for workload in args.workloads:
        repeats = args.steps if workload == "train" else args.passes
        medians: dict[str, list[float]] = {name: [] for name in VARIANTS}
        for round_ in range(args.rounds):
            for name in (list(VARIANTS) if round_ % 2 == 0 else list(reversed(VARIANTS))):
                measured = run_variant(name, workload, repeats)
                if measured is not None:
                    medians[name].append(measured[0])
                    print(f"{workload} round {round_}: {name} {measured[0]:.3f} s, peak {measured[1]:.2f} GiB", flush=True)
        ours = statistics.median(medians["ssd"])
        what = "300x300 train step b8" if workload == "train" else "8 MP forward b1"
        for name, values in medians.items():
            if name != "ssd" and values:
                report(f"{what}: ssd's policy vs {name}", ours, statistics.median(values), f"{name} ({'LD_PRELOAD' if VARIANTS[name][0] else 'defaults'})")


if __name__ == "__main__":
    main()
