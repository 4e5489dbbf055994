"""Large CPU tensors on transparent huge pages, unless the user said otherwise.

A training step allocates its activations afresh every step, and glibc hands each large block
back to the OS when it is freed, so every step faults gigabytes in again. With 4 KiB pages the
kernel's share of an 8 MP training step on the CPU was most of its time; backing tensors of 2 MiB
and more with huge pages made the step 1.35x faster (README, performance). PyTorch reads
``THP_MEM_ALLOC_ENABLE`` once, at its first allocation, so the package sets it before importing
torch; a value already in the environment is kept (``THP_MEM_ALLOC_ENABLE=0`` turns it off), and
a process that imported torch before ``ssd`` keeps torch's default.
"""
import os

ENV = "THP_MEM_ALLOC_ENABLE"
os.environ.setdefault(ENV, "1")
