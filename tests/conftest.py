"""Shared fixtures: a tiny two-map config small enough for fast model tests; the hostile suite's count
per kind of bad input, printed after every run; and the property tests' profiles (``default`` in
``make test``, ``sweep`` for the larger sweep: ``pytest -m hostile --hypothesis-profile=sweep``)."""
from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections import Counter
from itertools import islice
from pathlib import Path

# Set before torch is imported, and inherited by the workers of `make test` and the commands they start.
if "PYTEST_XDIST_WORKER" in os.environ:
    # `make test` runs one worker per core (pytest-xdist), each in one thread (its forked and spawned commands
    # too, unless they ask for more): the tests' tensors are small, and a second intra-op thread in each worker
    # spins waiting on the core the other worker needs.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
if "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
    # torch.compile's kernels in a cache of this run's own, removed at its end: a kernel cache left in /tmp by
    # an earlier run (torch 2.14.1 reuses what it finds there) once crashed the compiled test with SIGBUS.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="ssd-tests-inductor-")
    atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("sweep", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("default")

# the kinds of bad input the hostile suite covers (docs/usage.md, "Faults and bad input")
HOSTILE_KINDS = (
    "crashing images", "faults of the machine", "numbers", "inputs overwritten, outputs raced", "resume and caches",
    "config mid-run", "silence and vague words", "MLPerf files and settings", "malformed records",
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    marker = item.get_closest_marker("hostile")
    if marker is not None:
        assert marker.args and marker.args[0] in HOSTILE_KINDS, f"{item.nodeid}: hostile kind {marker.args} not in HOSTILE_KINDS"
        outcome.get_result().user_properties.append(("hostile", marker.args[0]))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules of whole runs (those with tests marked ``slow``) first, the busiest beside the idlest
    (:func:`_busiest_beside_idlest`), dealt out in turn to the workers of ``make test``: each worker starts on its
    share of this order (``--dist worksteal`` hands the k-th of n workers the k-th of n equal runs of it), the
    other modules after them in pytest's order; a module stays whole, so its module fixtures (the learning test's
    training) are built once. An idle worker steals from the end of another's share, which then holds no whole
    runs. In one process: the modules of whole runs first."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.module.__name__, []).append(item)
    whole_runs = {name for name, tests in modules.items() if any(test.get_closest_marker("slow") for test in tests)}
    slow = _busiest_beside_idlest([tests for name, tests in modules.items() if name in whole_runs])
    fast = iter([test for name, tests in modules.items() if name not in whole_runs for test in tests])
    order, left = [], len(items)
    for k in range(workers):
        size = left // (workers - k)  # worksteal's split
        share = [test for tests in slow[k::workers] for test in tests]
        order += share + list(islice(fast, max(0, size - len(share))))
        left -= size
    items[:] = order + list(fast)


def _cores(tests: list[pytest.Item]) -> int:
    """The cores a module's whole runs keep busy: ``slow(cores=N)``, 1 unless marked otherwise (0: it mostly waits)."""
    return max(marker.kwargs.get("cores", 1) for test in tests if (marker := test.get_closest_marker("slow")))


def _busiest_beside_idlest(slow: list[list[pytest.Item]]) -> list[list[pytest.Item]]:
    """The modules of whole runs taken alternately from the busiest and the idlest end (pytest's order among
    equals), so that a run that mostly waits (TEST01's padded queries) is dealt beside one of several processes
    rather than leave a core idle beside a run of one."""
    busiest_first = sorted(slow, key=_cores, reverse=True)
    return [busiest_first.pop(-(turn % 2)) for turn in range(len(busiest_first))]


def pytest_terminal_summary(terminalreporter) -> None:
    """How many hostile cases of each kind ran, and how many of them failed."""
    counts: dict[str, Counter] = {}
    for outcome in ("passed", "failed", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if outcome != "error" and getattr(report, "when", "call") != "call":
                continue
            for key, kind in getattr(report, "user_properties", ()):
                if key == "hostile":
                    counts.setdefault(kind, Counter())[outcome] += 1
    if counts:
        terminalreporter.write_sep("-", "hostile-input suite, by kind")
        for kind in HOSTILE_KINDS:
            if kind in counts:
                done = counts[kind]
                terminalreporter.write_line(f"{kind:36s} {sum(done.values()):4d} cases, {done['failed'] + done['error']} failed")

from support import TINY_YAML, TinyFiles, build_tiny_files

from ssd.config import Config, load_config
from ssd.data.synth import synth_cognata


@pytest.fixture
def tiny_config_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_YAML)
    return path


@pytest.fixture
def config_path(tiny_config_path: Path) -> Path:
    return tiny_config_path


@pytest.fixture
def tiny_config(tiny_config_path: Path) -> Config:
    return load_config(tiny_config_path)


@pytest.fixture(scope="session")
def tiny_files(tmp_path_factory) -> TinyFiles:
    """The tiny model's config, checkpoint and data (:func:`support.build_tiny_files`), built once per run."""
    return build_tiny_files(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def cognata(tmp_path_factory) -> Path:
    """A synthetic Cognata dataset of 20 frames at the tiny config's size (64x128), for training runs."""
    root = tmp_path_factory.mktemp("cognata")
    synth_cognata(root, 20, size=(64, 128), seed=3, objects=(1, 3))
    return root
