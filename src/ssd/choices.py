"""The named values of settings that several layers share, checked once (imports nothing heavy: the
CLI's flags offer them).

Precision, one vocabulary for every command and API: ``fp32``; ``bf16`` or ``fp16``, the network under
that autocast (an exported network compiled for it); ``amp``, the seed's ``--amp``: the device's usual
half precision (fp16 on CUDA, bf16 elsewhere).
"""
from __future__ import annotations

from ssd.errors import SSDError, parameter

PRECISIONS = ("fp32", "bf16", "fp16")
AMP = "amp"
PRECISION_NAMES = PRECISIONS + (AMP,)
# activations recomputed in the backward pass: none, the backbone's, or every block's (ssd.models.checkpointing)
ACTIVATION_CHECKPOINTING = ("off", "backbone", "all")


class PrecisionError(SSDError, ValueError):
    """A precision name outside :data:`PRECISION_NAMES`."""


def resolve_precision(name: str, device_type: str) -> str:
    """``name`` as one of :data:`PRECISIONS` on a device of ``device_type`` (``cpu``, ``cuda``...)."""
    if name not in PRECISION_NAMES:
        raise PrecisionError(f"{parameter('precision')} {name}: expected one of {', '.join(PRECISION_NAMES)}")
    if name == AMP:
        return "fp16" if device_type == "cuda" else "bf16"
    return name
