import os
import statistics
import subprocess
import sys

import pytest
import torch

from ssd.heap_retention import (
    DEFAULT_MMAP_MAX,
    DEFAULT_TRIM_THRESHOLD,
    M_MMAP_MAX,
    M_TRIM_THRESHOLD,
    NEVER_TRIM,
    HeapRetention,
    glibc,
    heap_retention_for,
    no_step_hook,
)

GIB = 2**30


class RecordingAllocator:
    def __init__(self):
        self.calls = []

    def mallopt(self, parameter, value):
        self.calls.append(("mallopt", parameter, value))
        return 1

    def malloc_trim(self, pad):
        self.calls.append(("malloc_trim", pad))
        return 1


class Memory:
    """Readings a test sets by hand."""

    def __init__(self, resident, peak, available):
        self.resident, self.peak, self.available = resident, peak, available

    def retention(self, allocator):
        return HeapRetention(allocator, lambda: self.resident, lambda: self.peak, lambda: self.available)


KEEP = [("mallopt", M_MMAP_MAX, 0), ("mallopt", M_TRIM_THRESHOLD, NEVER_TRIM)]
HAND_BACK = [("mallopt", M_MMAP_MAX, DEFAULT_MMAP_MAX), ("mallopt", M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD), ("malloc_trim", 0)]


def test_heap_is_kept_when_three_peaks_fit_and_until_it_passes_two():
    allocator, memory = RecordingAllocator(), Memory(resident=1 * GIB, peak=3 * GIB, available=8 * GIB)
    retention = memory.retention(allocator)
    retention.after_step()
    assert retention.state == "kept" and retention.limit == 6 * GIB
    assert allocator.calls == KEEP
    memory.resident = 5 * GIB  # grown, but within twice the first peak
    retention.after_step()
    assert retention.state == "kept" and allocator.calls == KEEP


def test_heap_is_not_kept_when_three_peaks_do_not_fit():
    """The 8 MP training case: a 12.5 GiB step on a 24 GiB machine (and a step just too large)."""
    allocator, memory = RecordingAllocator(), Memory(resident=1.4 * GIB, peak=12.5 * GIB, available=20 * GIB)
    retention = memory.retention(allocator)
    retention.after_step()
    retention.after_step()
    assert retention.state == "handed back" and allocator.calls == []
    just_too_large = Memory(resident=1 * GIB, peak=3 * GIB, available=8 * GIB - 1).retention(allocator)
    just_too_large.after_step()
    assert just_too_large.state == "handed back" and allocator.calls == []


def test_heap_is_handed_back_for_good_once_it_grows_past_twice_the_peak():
    allocator, memory = RecordingAllocator(), Memory(resident=1 * GIB, peak=2 * GIB, available=20 * GIB)
    retention = memory.retention(allocator)
    retention.after_step()
    memory.resident = 4 * GIB + 1
    retention.after_step()
    assert retention.state == "handed back" and allocator.calls == KEEP + HAND_BACK
    memory.resident = 1 * GIB
    retention.after_step()
    assert allocator.calls == KEEP + HAND_BACK


def test_handing_back_restores_glibcs_defaults_once():
    allocator, memory = RecordingAllocator(), Memory(resident=1 * GIB, peak=2 * GIB, available=20 * GIB)
    retention = memory.retention(allocator)
    retention.hand_back()  # undecided: nothing was changed
    assert retention.state == "handed back" and allocator.calls == []
    retention = memory.retention(allocator)
    retention.after_step()
    retention.hand_back()
    retention.hand_back()
    assert allocator.calls == KEEP + HAND_BACK


@pytest.mark.parametrize("with_glibc", [True, False])
def test_only_loops_on_the_cpu_get_a_heap_retention(with_glibc: bool, monkeypatch):
    """Both C libraries on every machine: glibc simulated by a recording allocator, its absence by None."""
    import ssd.heap_retention

    monkeypatch.setattr(ssd.heap_retention, "glibc", lambda: RecordingAllocator() if with_glibc else None)
    assert heap_retention_for(torch.device("meta")) is no_step_hook
    hook = heap_retention_for(torch.device("cpu"))
    assert isinstance(hook.__self__, HeapRetention) and hook.__self__.state == ("undecided" if with_glibc else "handed back")


IMPORT_EFFECTS = """
import gc, os, sys
before = dict(os.environ)
import ssd, ssd.data, ssd.errors, ssd.heap_retention, ssd.huge_pages, ssd.cli.main
ssd.cli.main.build_parser()
retentions = [o for o in gc.get_objects() if isinstance(o, ssd.heap_retention.HeapRetention)]
print(dict(os.environ) == before, len(retentions), "torch" in sys.modules, "numpy" in sys.modules)
"""


def test_importing_the_package_and_building_the_cli_changes_nothing_and_loads_nothing_heavy():
    env = {key: value for key, value in os.environ.items() if key != "THP_MEM_ALLOC_ENABLE"}
    done = subprocess.run([sys.executable, "-c", IMPORT_EFFECTS], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["True", "0", "False", "False"]


def test_without_glibc_nothing_is_called():
    retention = HeapRetention(None)
    retention.after_step()
    assert retention.state == "handed back"


KEPT_HEAP_FAULTS = """
import resource, torch
from ssd.heap_retention import HeapRetention, glibc
PROCESS_HEAP = HeapRetention(glibc())

def block_faults():  # page faults of a 64 MiB tensor written once, then freed
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(2**24).fill_(1)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

block_faults()
if {keep}:
    PROCESS_HEAP.after_step()
    assert PROCESS_HEAP.state == "kept"
for _ in range(5):  # the heap settles: the first freed blocks are a little too small to reuse alone
    block_faults()
print(*(block_faults() for _ in range(9)))
"""


@pytest.mark.skipif(glibc() is None, reason="heap retention works through glibc's mallopt")
def test_a_kept_heap_gives_blocks_back_without_page_faults():
    """With 4 KiB pages each fresh 64 MiB block faults 16,384 times; blocks from the kept heap hardly
    ever (a small allocation made in between can take a piece of a freed block, so the median counts)."""
    env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "0"}
    faults = {}
    for keep in (False, True):
        done = subprocess.run([sys.executable, "-c", KEPT_HEAP_FAULTS.format(keep=keep)], env=env, capture_output=True, text=True, check=True)
        faults[keep] = statistics.median(int(count) for count in done.stdout.split())
    assert faults[False] >= 16_000
    assert faults[True] < 1_000


FORKED_CHILD_STATE = """
import os
from ssd.heap_retention import HeapRetention, glibc
PROCESS_HEAP = HeapRetention(glibc())
PROCESS_HEAP.after_step()
read, write = os.pipe()
if os.fork() == 0:
    os.write(write, PROCESS_HEAP.state.encode())
    os._exit(0)
os.wait()
print(PROCESS_HEAP.state, "/", os.read(read, 100).decode())
"""


@pytest.mark.skipif(glibc() is None, reason="heap retention works through glibc's mallopt")
def test_a_forked_child_starts_with_glibcs_defaults():
    done = subprocess.run([sys.executable, "-c", FORKED_CHILD_STATE], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "kept / handed back"
