"""Random states: seeding a process, and saving and restoring every generator a run draws from."""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch (CPU and this process's CUDA device) random states as plain Python values.

    Plain values (no tensors, no arrays) load with ``weights_only=True`` and travel through
    ``all_gather_object``, which mis-unpickles tensor storages in this PyTorch release. Only the
    current CUDA device's state is kept (each rank draws on its own device), so a run resumes on a
    machine, or with a ``CUDA_VISIBLE_DEVICES``, that shows fewer devices.
    """
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": (kind, keys.tolist(), int(position), int(has_gauss), float(gauss)),
        "torch": bytes(torch.get_rng_state().numpy()),
    }
    if torch.cuda.is_available():
        state["cuda"] = bytes(torch.cuda.get_rng_state().numpy())
    return state


def _byte_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` saved."""
    random.setstate(state["python"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(_byte_tensor(state["torch"]))
    saved = state.get("cuda")
    if saved is not None and torch.cuda.is_available():
        if isinstance(saved, list):  # older checkpoints: every visible device's state
            device = torch.cuda.current_device()
            if device >= len(saved):
                return
            saved = saved[device]
        torch.cuda.set_rng_state(_byte_tensor(saved))
