"""``benchmarks/gpu_check.py --dry-run``: every section of the one-shot GPU check runs on the CPU, so the
script a lent GPU runs has been run before."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import forked

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_dry_run_runs_every_section(tmp_path: Path):
    out = tmp_path / "gpu_check.json"
    done = forked.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--out", str(out)], ROOT, {**os.environ, "OMP_NUM_THREADS": "1"}, 900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["dry_run"] is True and results["config"] == "tiny"
    measured = [row for row in results["training"] if "images_per_s" in row]
    assert len(measured) == 8 and all(row["images_per_s"] > 0 and row["batch"] == 1 for row in measured)
    assert {row["result"] for row in results["training"] if "images_per_s" not in row} == {"not in a dry run"}
    assert [row["dtype"] for row in results["inference"]] == ["fp32", "bf16"]
    assert all(0 < row["p50_ms"] <= row["p99_ms"] for row in results["inference"])
    assert results["ddp"] == [{"processes": 1, "backend": "gloo", "s_per_step": results["ddp"][0]["s_per_step"]}]
    assert results["stalls"]["largest"] and all(entry["host_ms"] >= 0 for entry in results["stalls"]["largest"])
    review = results["review"]
    assert all(value is True for key, value in review.items() if key not in ("cudnn.benchmark on (CUDA)", "ONNX Runtime on CUDA with IO binding"))
    assert review["ONNX Runtime on CUDA with IO binding"]["max_difference"] < 1e-3
    assert "| fp32 | off | 1 |" in done.stdout  # the Markdown table
