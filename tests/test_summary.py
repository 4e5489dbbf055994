import subprocess
import sys
from pathlib import Path

from ssd.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


def test_seed_test_8mp_figures(capsys):
    assert main(["summary", "--config", "test_8MP", "--num-classes", "10", "--batch-size", "4"]) == 0
    out = capsys.readouterr().out
    assert "[4, 4, 788144]" in out
    assert "Total params: 14,059,236" in out
    assert "Feature sizes: (270, 480), (135, 240), (68, 120), (34, 60), (32, 58), (30, 56)" in out
    assert "Default boxes: 788,144" in out and "Mult-adds: 5.56 T" in out


def test_seed_script_and_bad_config():
    done = subprocess.run(
        [sys.executable, "model_summary.py", "--config", "coco_300x300", "--num-classes", "81"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "Default boxes: 8,732" in done.stdout
    bad = subprocess.run(
        [sys.executable, "model_summary.py", "--config", "nope"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and bad.stderr.startswith("error: config 'nope' not found")
