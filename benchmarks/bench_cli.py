"""Start-up of the ``ssd`` command: ``ssd --help`` and ``ssd <command> --help`` (goal: under 0.5 s).

The command imports only light modules until a command runs, so its help does not pay for PyTorch.
The peer is what an eagerly importing command pays first: ``import torch, torchvision`` (the
package's ``ssd --help`` took about 5 s when it imported the whole library). Each figure is the
median wall time of fresh interpreters.

Run: .venv/bin/python benchmarks/bench_cli.py [--repeats 5]
"""
from __future__ import annotations

from common import report  # first: it turns huge pages on before torch loads

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = ("", "train", "evaluate", "predict", "export", "loadgen", "summary", "data", "demo")
GOAL_SECONDS = 0.5


def seconds(arguments: list[str], repeats: int) -> float:
    """Median wall time of ``python arguments`` in fresh interpreters."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, *arguments], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    helps = {command: seconds(["-m", "ssd.cli.main", *([command] if command else []), "--help"], args.repeats) for command in COMMANDS}
    for command, value in helps.items():
        print(f"ssd {command + ' ' if command else ''}--help: {value:.3f} s", flush=True)
    library = seconds(["-c", "import ssd, ssd.data"], args.repeats)
    eager = seconds(["-c", "import torch, torchvision"], args.repeats)
    slowest = max(helps, key=helps.get)
    print(f"import ssd, ssd.data: {library:.3f} s; import torch, torchvision: {eager:.3f} s", flush=True)
    print(f"slowest help: ssd {slowest} --help, {helps[slowest]:.3f} s (goal < {GOAL_SECONDS} s: "
          f"{'met' if helps[slowest] < GOAL_SECONDS else 'NOT met'})", flush=True)
    report("ssd <command> --help, slowest of 9", helps[slowest], eager, "import torch, torchvision (an eager CLI's floor)")


if __name__ == "__main__":
    main()
