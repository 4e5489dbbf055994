"""The named values of settings that several layers share, checked once (imports nothing heavy: the
CLI's flags offer them).

Precision, one vocabulary for every command and API: ``fp32``; ``bf16`` or ``fp16``, the network under
that autocast (an exported network compiled for it); ``amp``, the seed's ``--amp``: the device's usual
half precision (fp16 on CUDA, bf16 elsewhere); ``auto`` (running a trained model): the fastest
precision whose accuracy cost has been measured within MLPerf's 99.9 % rule, :func:`choose_precision`.
"""
from __future__ import annotations

from ssd.errors import SSDError, parameter

PRECISIONS = ("fp32", "bf16", "fp16")
AMP = "amp"
AUTO = "auto"
PRECISION_NAMES = PRECISIONS + (AMP,)
# engines whose bf16 kept a trained model's mAP within MLPerf's 99.9 % on a CPU with native bfloat16 (README,
# accuracy by engine and precision): none so far (PyTorch's kept 99.69 %, OpenVINO's 99.49 %)
BF16_MEASURED_ENGINES: tuple[str, ...] = ()
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


def choose_precision(engine: str, device_type: str, native_bf16: bool, int8_file: bool = False) -> tuple[str, str]:
    """``auto``'s precision for a model run by ``engine`` on ``device_type``, and why, in a few words.

    bf16 where the CPU runs it natively and the engine's bf16 accuracy was measured within MLPerf's
    99.9 % (:data:`BF16_MEASURED_ENGINES`); fp32 everywhere else. An INT8 file is the user's
    calibrated choice and runs as exported (its int8 kernels, the rest in fp32).
    """
    if int8_file:
        return "fp32", "an INT8 export runs its int8 kernels, the rest in fp32"
    if device_type != "cpu":
        return "fp32", f"on {device_type} no half precision's accuracy has been measured"
    if not native_bf16:
        return "fp32", "this CPU has no native bfloat16 (AVX-512 BF16 or AMX), where bf16 is emulated and slower"
    if engine not in BF16_MEASURED_ENGINES:
        return "fp32", f"{engine}'s bf16 has not kept a trained model's mAP within MLPerf's 99.9 % (README: accuracy by engine and precision)"
    return "bf16", "this CPU runs bfloat16 natively and bf16 kept a trained model's mAP within MLPerf's 99.9 %"
