"""Training checkpoints: one dict with everything needed to resume, written atomically.

A checkpoint is written to a temporary file in the same folder, flushed to disk, then renamed over
the target, so a process killed at any moment leaves either the previous file or the new one, never
a truncated one. Files hold only tensors and plain Python values, so they load with
``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

LAST = "last.pth"
BEST = "best.pth"


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def epoch_checkpoint_name(save_name: str, epoch: int) -> str:
    """The reference's per-epoch file name: ``{save_name}_ep{epoch}.pth`` (epoch counted from 0)."""
    return f"{save_name}_ep{epoch}.pth"


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and CUDA) random states as plain Python values.

    Plain values (no tensors, no arrays) load with ``weights_only=True`` and travel through
    ``all_gather_object``, which mis-unpickles tensor storages in this PyTorch release.
    """
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, keys.tolist(), int(position), int(has_gauss), float(gauss)),
        "torch": bytes(torch.get_rng_state().numpy()),
    }
    if torch.cuda.is_available():
        state["cuda"] = [bytes(s.numpy()) for s in torch.cuda.get_rng_state_all()]
    return state


def _byte_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(_byte_tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([_byte_tensor(s) for s in state["cuda"]])
