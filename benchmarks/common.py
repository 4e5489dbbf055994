"""Timing helpers shared by the benchmarks, the one results line format, and the naive reference oracles in tests/.

Every figure goes through :func:`report`, which prints it and, when ``make bench`` (run_all.py)
set ``SSD_BENCH_TABLE`` to a file, appends it there as one JSON line for the summary table.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ssd.huge_pages import ENV as HUGE_PAGES_ENV
from ssd.huge_pages import enable_huge_pages

# the tests' shared artefacts (tests/support.py) and oracles (tests/reference_impl.py), never a test module
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

TABLE_ENV = "SSD_BENCH_TABLE"
# Our side runs as the ssd command does: large tensors on huge pages unless the environment says
# otherwise. Benchmarks import this module before torch, which reads the setting once.
enable_huge_pages()


def side_environment(huge_pages: bool) -> dict[str, str]:
    """The environment of a side's process. The reference runs with PyTorch's default allocator,
    without the huge pages that the ``ssd`` command turns on (``huge_pages=False``); ours with them."""
    return {**os.environ, HUGE_PAGES_ENV: "1" if huge_pages else "0"}


def peak_rss_gib() -> float:
    """This process's peak resident memory in GiB: ``VmHWM``, the high-water mark of its own address
    space. ``getrusage``'s ``ru_maxrss`` is not that for a side: Linux carries the parent's resident
    size at the fork over the exec into it, so every side would report at least the parent's."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def run_side(script: str, arguments: list[str], huge_pages: bool = False) -> dict:
    """Run ``script`` with ``arguments`` in a fresh interpreter and return the JSON of its last output line."""
    done = subprocess.run(
        [sys.executable, script, *arguments], env=side_environment(huge_pages), check=True, capture_output=True, text=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


class SideProcess:
    """A side in a process of its own that answers each request line with one JSON line, so that
    sides with different allocators can still take turns (see ``bench_train.py``)."""

    def __init__(self, script: str, arguments: list[str], huge_pages: bool = False):
        self.name = " ".join(arguments)
        self.process = subprocess.Popen(
            [sys.executable, script, *arguments], env=side_environment(huge_pages), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, request: str) -> object:
        self.process.stdin.write(request + "\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise RuntimeError(f"benchmark side {self.name!r} ended (exit status {self.process.wait()})")
        return json.loads(answer)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()


def best_time(function: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Best wall time in seconds over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def speed_up(ours: float, reference: float, unit: str) -> float:
    """How many times faster ours is: a ratio of times, or of rates when ``unit`` is per second."""
    return ours / reference if unit.endswith("/s") else reference / ours


def report(figure: str, ours: float, reference: float, baseline: str, unit: str = "s", target: float | None = None,
           roofline: tuple[float, float] | None = None) -> None:
    """Print one figure: ours, the reference's (``baseline`` says what it is), the speed-up and the target;
    ``roofline``: (ours's model GFLOP/s, the measured peak GFLOP/s of its engine and precision, see roofline.py)."""
    ratio = speed_up(ours, reference, unit)
    line = f"{figure:<46} ours {ours:9.4g} {unit:<9} reference {reference:9.4g} {unit:<9} speed-up {ratio:6.1f}x"
    if roofline is not None:
        line += f"   model {roofline[0]:.0f} GFLOP/s = {roofline[0] / roofline[1]:.0%} of peak"
    if target is not None:
        line += f"   (target {target:g}x: {'met' if ratio >= target else 'NOT met'})"
    print(f"{line}   [reference: {baseline}]", flush=True)
    table = os.environ.get(TABLE_ENV)
    if table:
        row = {"figure": figure, "ours": ours, "reference": reference, "baseline": baseline, "unit": unit, "ratio": ratio, "target": target,
               "roofline": roofline}
        with open(table, "a") as handle:
            handle.write(json.dumps(row) + "\n")
