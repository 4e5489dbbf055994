"""Moving batches to the device and values back, without making the device wait; what the CPU runs natively."""
from __future__ import annotations

from pathlib import Path

import torch

CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of CPUs that run bfloat16 natively


def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo cannot be read)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return frozenset()
    return frozenset(word for line in text.splitlines() if line.startswith("flags") for word in line.partition(":")[2].split())


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU runs bfloat16 natively (AVX-512 BF16 or AMX); elsewhere bf16 is emulated, and slower than fp32."""
    return any(flag in (cpu_flags() if flags is None else flags) for flag in NATIVE_BF16_FLAGS)


def images_to_device(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A batch on the device, in channels-last memory format if asked (as the model was converted)."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return images.to(device, non_blocking=True).contiguous(memory_format=memory_format)


def stage_on_device(sample: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Keep a preprocessed sample where a timed query can use it without a host-to-device copy.

    On a GPU the sample is copied there (LoadGen's 128 performance samples of 8 MP float32 take
    12.8 GB, which data-centre GPUs hold); when the GPU is full, it stays on the host in pinned
    memory, whose copy to the device is asynchronous and at full bus speed. On the CPU it is the
    sample itself.
    """
    if device.type == "cpu":
        return sample
    try:
        return sample.to(device)
    except torch.OutOfMemoryError:
        return sample.pin_memory()


def configure_cudnn(device: torch.device, benchmark: bool = True) -> None:
    """On CUDA, let cuDNN time its convolution algorithms once and keep the fastest (``benchmark``).

    Every input has the config's fixed size, so the search runs once per shape. Neither setting
    makes CUDA training bit-reproducible (atomic adds in gathers' backward, cuDNN's own algorithms);
    ``benchmark=False`` with ``torch.use_deterministic_algorithms(True)`` and
    ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` is PyTorch's way to ask for that, at a cost in speed.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = benchmark


class HostValues:
    """Device values copied to the host without blocking: :meth:`get` waits for that copy alone.

    On CUDA the copy goes to pinned memory behind an event, so reading it later does not drain
    the queue of kernels launched since (``.item()`` would). On the CPU it is the values themselves.
    """

    def __init__(self, values: torch.Tensor):
        self._event = None
        if values.device.type == "cuda":
            self._values = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            self._values.copy_(values, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._values = values

    def get(self) -> list:
        if self._event is not None:
            self._event.synchronize()
        return self._values.tolist()
