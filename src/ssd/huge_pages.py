"""Large CPU tensors on transparent huge pages, when the CLI (or a caller) turns them on.

A training step allocates its activations afresh every step, and glibc hands each large block
back to the OS when it is freed, so every step faults gigabytes in again. With tensors of 2 MiB and
more on huge pages, one fault maps 2 MiB instead of 4 KiB, so the kernel's share of a CPU step
shrinks (figures in docs/performance.md). PyTorch reads ``THP_MEM_ALLOC_ENABLE`` once, at its
first allocation, so :func:`enable_huge_pages` must run before torch is imported: the ``ssd``
command calls it first thing. A value already in the environment is kept
(``THP_MEM_ALLOC_ENABLE=0`` turns it off). Importing this module changes nothing.
"""
import os

ENV = "THP_MEM_ALLOC_ENABLE"


def enable_huge_pages() -> bool:
    """Ask PyTorch for huge pages unless the environment already decides; True when they are asked for."""
    return os.environ.setdefault(ENV, "1") != "0"
