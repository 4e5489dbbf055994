"""Timing helpers shared by the benchmarks, and access to the naive reference oracles in tests/."""
from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


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


def median_time(function: Callable[[], object], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def report(figure: str, ours: float, reference: float, target: float | None = None, unit: str = "s") -> str:
    """One line: figure, our time, the reference's, the speed-up (and the target when there is one)."""
    ratio = reference / ours
    line = f"{figure:<44} ours {ours:9.4f} {unit}   reference {reference:9.4f} {unit}   speed-up {ratio:6.1f}x"
    if target is not None:
        line += f"   (target {target:g}x: {'met' if ratio >= target else 'NOT met'})"
    print(line, flush=True)
    return line
