"""Mixed precision with torch.amp: fp16 + GradScaler on CUDA, bf16 (no scaler) on the CPU."""
from __future__ import annotations

import contextlib

import torch


class MixedPrecision:
    """The autocast context and gradient scaler for one device; a no-op when disabled."""

    def __init__(self, device: torch.device, enabled: bool):
        self.device_type = device.type
        self.enabled = enabled
        self.dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
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
