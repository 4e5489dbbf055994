"""`make bench`: run every benchmark script in turn (each prints its own details), then one summary table.

Run: .venv/bin/python benchmarks/run_all.py [name ...]   (names: cli, core, data, eval, inference, predict, train)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import TABLE_ENV

HERE = Path(__file__).resolve().parent
SCRIPTS = {
    "cli": "bench_cli.py", "core": "bench_core.py", "data": "bench_data.py", "eval": "bench_eval.py",
    "inference": "bench_inference.py", "predict": "bench_predict.py", "train": "bench_train.py",
}


def print_table(rows: list[dict]) -> None:
    """Figure, ours, the reference's figure, speed-up, model GFLOP/s and its share of this CPU's measured
    peak (forward and training rows), target, and what the reference side is."""
    print(f"\n{'figure':<46} {'ours':>10} {'reference':>10} {'unit':<9} {'speed-up':>8} {'GFLOP/s':>8} {'of peak':>7}  {'target':<11} reference side")
    for row in rows:
        target = "" if row["target"] is None else f"{row['target']:g}x " + ("met" if row["ratio"] >= row["target"] else "NOT met")
        roofline = row.get("roofline")
        gflops, share = (f"{roofline[0]:.0f}", f"{roofline[0] / roofline[1]:.0%}") if roofline else ("", "")
        print(f"{row['figure']:<46} {row['ours']:>10.4g} {row['reference']:>10.4g} {row['unit']:<9} "
              f"{row['ratio']:>7.1f}x {gflops:>8} {share:>7}  {target:<11} {row['baseline']}")


def main(names: list[str]) -> int:
    unknown = [name for name in names if name not in SCRIPTS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(SCRIPTS)}")
        return 2
    failed = []
    start_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        table = Path(folder) / "table.jsonl"
        table.touch()
        for name in names or list(SCRIPTS):
            print(f"== {name} ({SCRIPTS[name]})", flush=True)
            start = time.perf_counter()
            result = subprocess.run([sys.executable, str(HERE / SCRIPTS[name])], cwd=HERE.parent, env={**os.environ, TABLE_ENV: str(table)})
            if result.returncode != 0:
                failed.append(name)
            print(f"== {name}: {time.perf_counter() - start:.0f} s", flush=True)
        rows = [json.loads(line) for line in table.read_text().splitlines()]
    print_table(rows)
    print(f"\n{len(rows)} figures in {time.perf_counter() - start_all:.0f} s; {os.cpu_count()} CPU cores")
    missed = [row["figure"] for row in rows if row["target"] is not None and row["ratio"] < row["target"]]
    if missed:
        print(f"targets not met: {'; '.join(missed)}")
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed or missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
