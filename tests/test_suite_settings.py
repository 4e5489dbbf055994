"""The suite's own settings (pyproject.toml's pytest options, as `make test` runs them): a test that takes its
worker's process down, or hangs, is reported as failed by name and the run ends, with every other test run; and
conftest's order deals the whole runs out to the workers."""
from __future__ import annotations

import itertools
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pytest
from conftest import pytest_collection_modifyitems

REPO = Path(__file__).resolve().parents[1]

FAULTS = '''
import os, signal, time

def test_crash():
    os.kill(os.getpid(), signal.SIGBUS)

def test_after_the_crash():
    pass

def test_hang():
    time.sleep(3600)

def test_after_the_hang():
    pass
'''
# a whole module already done before the crash: xdist 3.8.0's loadfile scheduler queued such work again and waited
DONE_FIRST = "def test_one():\n    pass\n\ndef test_two():\n    pass\n"


def test_a_crashing_and_a_hanging_test_fail_by_name_and_the_run_ends(tmp_path: Path):
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    (tmp_path / "test_a_done_first.py").write_text(DONE_FIRST)
    (tmp_path / "test_faults.py").write_text(FAULTS)
    (tmp_path / "pytest.ini").write_text(
        f"[pytest]\naddopts = {options['addopts']}\ntimeout = 2\ntimeout_method = {options['timeout_method']}\n")
    assert int(options["timeout"]) >= 300  # the real limit: well above the slowest test, below CI's 90 minutes
    run = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-p", "no:cacheprovider", "-q", str(tmp_path)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=180)
    summary = run.stdout.splitlines()[-1]
    assert run.returncode == 1, run.stdout[-3000:]
    assert "2 failed, 4 passed" in summary, run.stdout[-3000:]
    failed = {line.split()[1].split(" ")[0] for line in run.stdout.splitlines() if line.startswith("FAILED ")}
    assert failed == {"test_faults.py::test_crash", "test_faults.py::test_hang"}, run.stdout[-3000:]


class Item:
    """What the order hook reads of a test (``slow`` with ``cores`` when given: the cores its run keeps busy)."""

    def __init__(self, module: str, index: int, cores: int | None = None):
        self.module = types.SimpleNamespace(__name__=module.lower())
        self.name = f"{module}{index}"
        self.in_whole_runs, self.marked_slow = module.isupper(), module.isupper() and index == 0
        self.marker = pytest.mark.slow(cores=cores).mark if cores is not None else pytest.mark.slow.mark

    def get_closest_marker(self, name: str):
        return self.marker if name == "slow" and self.marked_slow else None


@pytest.mark.parametrize("workers", [1, 2, 3])
@pytest.mark.parametrize("modules", ["aaBBBccDeeFFgh", "AAA", "ABC", "ABCd", "a", "abC"])
def test_each_worker_starts_on_its_turn_of_the_whole_runs(modules: str, workers: int, monkeypatch):
    """Every test kept once, each module of whole runs in one piece; worksteal's k-th share (the k-th of n equal
    runs) starts with the modules of whole runs k, k+n, ... (capitals: a module whose first test is marked slow)."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    items = [Item(module, modules[:i].count(module)) for i, module in enumerate(modules)]
    ordered = list(items)
    pytest_collection_modifyitems(ordered)
    assert sorted(item.name for item in ordered) == sorted(item.name for item in items)
    runs = [name for name, _ in itertools.groupby(item.module.__name__ for item in ordered)]
    assert all(runs.count(name.lower()) == 1 for name in modules if name.isupper())  # a whole run's module whole
    in_order = [[item for item in items if item.module.__name__ == name.lower()] for name in dict.fromkeys(modules)
                if name.isupper()]
    # all of one busyness: taken alternately from the front and the back
    slow = [in_order[turn // 2] if turn % 2 == 0 else in_order[-1 - turn // 2] for turn in range(len(in_order))]
    left, start = len(items), 0
    for k in range(workers):
        size = left // (workers - k)  # worksteal's split
        mine = [item for tests in slow[k::workers] for item in tests]
        assert ordered[start:start + len(mine)] == mine
        start, left = start + max(size, len(mine)), left - size
    assert [item for item in ordered if not item.in_whole_runs] == [item for item in items if not item.in_whole_runs]


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_a_run_that_mostly_waits_is_dealt_beside_the_busiest(workers: int, monkeypatch):
    """Modules of whole runs taken alternately from the busiest and the idlest end of ``slow(cores=N)`` (1 when
    not given; pytest's order among equals): a waiting run starts beside a run of several processes."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", str(workers))
    cores = {"A": 1, "B": 0, "C": None, "D": 2, "E": 1}
    items = [Item(module, 0, cores[module]) for module in "ABCDE"] + [Item("f", 0)]
    pytest_collection_modifyitems(items)
    slow = ["d", "b", "a", "e", "c"]  # cores 2, then 0, then the 1s (A, C unmarked, E) from both ends
    assert [item.module.__name__ for item in items] == [name for k in range(workers) for name in slow[k::workers]] + ["f"]
