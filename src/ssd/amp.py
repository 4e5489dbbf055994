"""Precision with torch.amp: the autocast of a precision name (:mod:`ssd.choices`) on a device, and
the gradient scaler that fp16 training steps go through (bf16 keeps fp32's exponent range: no scaler)."""
from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from ssd.choices import resolve_precision

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

Autocast = Callable[[], contextlib.AbstractContextManager]


class MixedPrecision:
    """The autocast context and gradient scaler of one precision on one device.

    ``precision``: a name of :data:`ssd.choices.PRECISION_NAMES` (``amp``: fp16 on CUDA, bf16
    elsewhere); :attr:`name` is the one it resolved to. fp16 steps go through the gradient scaler, on
    either device; fp32 is a no-op.
    """

    def __init__(self, device: torch.device, precision: str = "fp32"):
        self.device_type = torch.device(device).type
        self.name = resolve_precision(precision, self.device_type)
        self.enabled = self.name != "fp32"
        self.dtype = AUTOCAST_DTYPES.get(self.name, torch.float32)
        self.scaler = torch.amp.GradScaler(self.device_type, enabled=self.name == "fp16")

    def autocast(self) -> contextlib.AbstractContextManager:
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def load_scaler_state(self, state: dict) -> None:
        """Restore a checkpoint's scaler state; a run saved without a scaler saved ``{}``, which is skipped
        (``GradScaler.load_state_dict`` refuses it), so such a checkpoint resumes in fp16 too."""
        if state:
            self.scaler.load_state_dict(state)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward and optimiser step; with fp16 the scaler skips steps whose gradients overflowed."""
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
