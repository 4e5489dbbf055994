"""Process-group set-up for torchrun / torch.distributed.launch, and the few collectives we need.

This is the one module that reads the launcher's environment (RANK, LOCAL_RANK, WORLD_SIZE). CUDA
processes use NCCL on the device of their *local* rank (the global rank would name a GPU that a
second node does not have); CPU processes use gloo. One process without a launcher works the same.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ssd.errors import SSDError, parameter


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: its ranks, the world size and its device."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def select_device(requested: str | None, local_rank: int) -> torch.device:
    """``cpu``, ``cuda`` (the local rank's GPU), ``cuda:N``, or None for CUDA when available."""
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise SSDError(f"{parameter('device')} {requested}: CUDA is not available on this machine")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def setup_distributed(device: str | None = None, local_rank: int | None = None, timeout_minutes: int = 30) -> DistributedContext:
    """Join the process group the launcher describes (or run alone), and pick this process's device.

    ``local_rank`` is the value of a ``--local-rank`` flag (torch.distributed.launch without
    ``--use-env``); the ``LOCAL_RANK`` environment variable takes precedence when set.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", local_rank if local_rank is not None else 0))
    selected = select_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if selected.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, init_method="env://", rank=rank, world_size=world_size,
            timeout=datetime.timedelta(minutes=timeout_minutes),
            device_id=selected if selected.type == "cuda" else None,
        )
    return DistributedContext(rank=rank, local_rank=local_rank, world_size=world_size, device=selected)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (just ``[obj]`` without a process group)."""
    if not dist.is_initialized():
        return [obj]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def gather_objects_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` in rank order on rank 0 (None on the others; ``[obj]`` without a process group).

    Only rank 0 receives, so the other ranks hold no copy of everyone's objects (an evaluation's
    detections of every rank would be world size times the largest rank's, on each GPU).
    """
    if not dist.is_initialized():
        return [obj]
    gathered: list[Any] | None = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not dist.is_initialized():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def mean_over_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` across ranks (itself without a process group)."""
    if not dist.is_initialized():
        return tensor
    reduced = tensor.detach().clone()
    dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
    return reduced / dist.get_world_size()
