"""Freed CPU memory kept in glibc's heap for the next step, while that stays affordable.

glibc hands every freed block above 32 MiB back to the OS, so a CPU training step maps its large
activations and gradients afresh each time and the kernel zeroes every page again as it is first
touched; so does each forward pass of an evaluation or prediction loop. Told to keep freed memory
(no mmap, no trimming), glibc reuses it instead, and the steps stop paying for those page faults
(the figures, for training steps and repeated forward passes, are in docs/performance.md). The price
is fragmentation: with steps as large as 8 MP training's, the resident set can grow far past the
step's peak within a few steps. So the heap is kept only when three times the process's peak so far
fits in the memory it could have, and handed back for good once the resident set passes twice that
peak (the third peak is room for the step during which it did); forked children (data loader
workers) start with glibc's defaults. A no-op except with glibc on Linux.

Nothing happens at import: a loop receives the hook of :func:`heap_retention_for` (the CLI builds
one per process and hands it to the training, evaluation and prediction loops) and calls it after
each step.
"""
from __future__ import annotations

import ctypes
import os
import platform
import resource
from collections.abc import Callable
from typing import Protocol

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_MAX = -4
DEFAULT_TRIM_THRESHOLD = 128 * 1024  # glibc's defaults, restored when the heap is handed back
DEFAULT_MMAP_MAX = 65536
NEVER_TRIM = 2**31 - 1  # mallopt takes a C int


class Device(Protocol):
    """What is read of a ``torch.device`` (this module does not import torch)."""

    type: str


class Allocator(Protocol):
    """The two glibc calls used (``ctypes.CDLL("libc.so.6")`` has them)."""

    def mallopt(self, parameter: int, value: int) -> int: ...

    def malloc_trim(self, pad: int) -> int: ...


def glibc() -> Allocator | None:
    """The C library when it is glibc on Linux, else None."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def resident_bytes() -> int:
    """This process's resident set now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


def peak_resident_bytes() -> int:
    """This process's largest resident set so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def available_bytes() -> int:
    """Memory the kernel could give without swapping (``MemAvailable``)."""
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


class HeapRetention:
    """Decides once, after the first step, whether freed memory stays in the heap; stops if it grows.

    ``state`` is ``"undecided"`` until the first :meth:`after_step`, then ``"kept"`` or ``"handed back"``
    (final). The memory readings are arguments so that tests can feed their own.
    """

    def __init__(
        self,
        allocator: Allocator | None,
        resident: Callable[[], int] = resident_bytes,
        peak: Callable[[], int] = peak_resident_bytes,
        available: Callable[[], int] = available_bytes,
    ):
        self.allocator = allocator
        self.resident, self.peak, self.available = resident, peak, available
        self.state = "undecided" if allocator is not None else "handed back"
        self.limit = 0

    def after_step(self) -> None:
        """Call after each step of a loop that repeats its allocations (a training step, a batch of inference)."""
        if self.state == "undecided":
            peak = self.peak()
            self.limit = 2 * peak
            if 3 * peak <= self.resident() + self.available():
                self.allocator.mallopt(M_MMAP_MAX, 0)
                self.allocator.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM)
                self.state = "kept"
                _hand_back_in_forked_children(self)
            else:
                self.state = "handed back"
        elif self.state == "kept" and self.resident() > self.limit:
            self.hand_back()

    def hand_back(self) -> None:
        """Return to glibc's defaults for good, handing the free memory back to the OS."""
        if self.state == "kept":
            self.allocator.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
            self.allocator.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
            self.allocator.malloc_trim(0)
        self.state = "handed back"


# retentions that kept the heap: held here (their glibc settings outlive them, process-wide) so that a
# forked child hands every one back; one at-fork handler per process (os.register_at_fork cannot unregister)
_KEPT: list[HeapRetention] = []
_FORK_HANDLER: list[bool] = []


def _hand_back_in_forked_children(retention: HeapRetention) -> None:
    """A forked child (a data loader worker) does other work than the steps ``retention`` decided for:
    it starts with glibc's defaults. One handler per process serves every retention that kept the heap."""
    _KEPT.append(retention)
    if not _FORK_HANDLER:
        os.register_at_fork(after_in_child=lambda: [kept.hand_back() for kept in _KEPT])
        _FORK_HANDLER.append(True)


StepHook = Callable[[], None]
"""Called after each step of a loop (a training step, a batch of evaluation or prediction)."""


def no_step_hook() -> None:
    """The hook of a loop that needs nothing after its steps."""


def heap_retention_for(device: Device) -> StepHook:
    """The after-step hook of loops on ``device``: a new :class:`HeapRetention`'s on the CPU, else nothing.

    On a GPU a step's memory is the device's, not the heap's. Give every loop of a process the same
    hook, so the process decides once.
    """
    return HeapRetention(glibc()).after_step if device.type == "cpu" else no_step_hook
