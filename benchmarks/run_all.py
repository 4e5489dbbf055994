"""`make bench`: run every benchmark script in turn, each printing its own figures.

Run: .venv/bin/python benchmarks/run_all.py [name ...]   (names: core, data, eval, inference)
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = {"core": "bench_core.py", "data": "bench_data.py", "eval": "bench_eval.py", "inference": "bench_inference.py"}


def main(names: list[str]) -> int:
    failed = []
    for name in names or list(SCRIPTS):
        script = HERE / SCRIPTS[name]
        if not script.is_file():
            print(f"== {name}: {script.name} missing", flush=True)
            failed.append(name)
            continue
        print(f"== {name} ({script.name})", flush=True)
        start = time.perf_counter()
        if subprocess.run([sys.executable, str(script)], cwd=HERE.parent).returncode != 0:
            failed.append(name)
        print(f"== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
