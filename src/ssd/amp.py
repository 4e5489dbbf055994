"""Mixed precision with torch.amp: fp16 + GradScaler on CUDA, bf16 (no scaler) on the CPU by default."""
from __future__ import annotations

import contextlib

import torch

from ssd.engine.options import AMP_DTYPE_NAMES

AMP_DTYPES = dict(zip(AMP_DTYPE_NAMES, (torch.bfloat16, torch.float16)))


class MixedPrecision:
    """The autocast context and gradient scaler for one device; a no-op when disabled.

    ``dtype``: ``bf16`` or ``fp16``; None is fp16 on CUDA and bf16 on the CPU. fp16 steps go
    through the gradient scaler, on either device.
    """

    def __init__(self, device: torch.device, enabled: bool, dtype: str | None = None):
        self.device_type = device.type
        self.enabled = enabled
        if dtype is not None and dtype not in AMP_DTYPES:
            raise ValueError(f"amp dtype {dtype!r}: expected one of {', '.join(AMP_DTYPES)}")
        self.dtype = AMP_DTYPES[dtype] if dtype is not None else torch.float16 if device.type == "cuda" else torch.bfloat16
        # bf16 keeps fp32's exponent range, so only fp16 needs loss scaling
        self.scaler = torch.amp.GradScaler(device.type, enabled=enabled and self.dtype == torch.float16)

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device_type, dtype=self.dtype, enabled=self.enabled)

    def load_scaler_state(self, state: dict) -> None:
        """Restore a checkpoint's scaler state; a run saved without a scaler saved ``{}``, which is skipped
        (``GradScaler.load_state_dict`` refuses it), so such a checkpoint resumes with ``--amp`` too."""
        if state:
            self.scaler.load_state_dict(state)

    def backward_and_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward and optimiser step; with fp16 the scaler skips steps whose gradients overflowed."""
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
