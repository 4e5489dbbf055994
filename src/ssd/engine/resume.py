"""Which checkpoint a run resumes from, agreed by every rank, on one node or many.

Every rank looks in its own file system: ``--resume`` when given, else ``save-folder/last.pth``.
With one node, or a save folder shared between nodes, they all find the same file. Without shared
storage only the node that held rank 0 has checkpoints, and which node holds rank 0 can change
between runs (a c10d rendezvous assigns ranks in arrival order). So the ranks compare what they
found and all resume from the newest checkpoint any of them has (highest epoch; the lowest rank's on
a tie), sent from the rank that read it to the others. A checkpoint that some rank cannot read is an
error on every rank, so no rank waits for the others in a collective that never comes.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ssd.checkpoint import LAST, CheckpointError, read_checkpoint
from ssd.distributed import DistributedContext, all_gather_objects, broadcast_object
from ssd.errors import parameter


@dataclass(frozen=True)
class ResumePoint:
    """The checkpoint a run resumes from, and where (on the rank that read it) it was found."""

    path: Path
    rank: int
    checkpoint: dict[str, Any]


def local_resume_path(resume: Path | None, save_folder: Path) -> Path | None:
    """This rank's candidate: ``resume`` when given (None when it is not a file here), else
    ``save_folder/last.pth`` when it exists."""
    path = Path(resume) if resume is not None else save_folder / LAST
    return path if path.is_file() else None


def newest_rank(epochs: Sequence[int | None]) -> int | None:
    """The rank whose checkpoint is the newest (highest epoch, lowest rank on a tie); None when no
    rank found one (``epochs[rank]`` None)."""
    found = [(epoch, rank) for rank, epoch in enumerate(epochs) if epoch is not None]
    if not found:
        return None
    newest = max(epoch for epoch, _ in found)
    return min(rank for epoch, rank in found if epoch == newest)


def _epoch_of(checkpoint: dict[str, Any]) -> int:
    epoch = checkpoint.get("epoch", -1)
    return epoch if isinstance(epoch, int) else -1


def find_resume_point(resume: Path | None, save_folder: Path, context: DistributedContext) -> ResumePoint | None:
    """The checkpoint every rank resumes from (read on the CPU), or None to start afresh.

    Raises :class:`CheckpointError` (on every rank) when an explicit ``resume`` exists on no rank or
    a rank cannot read its checkpoint.
    """
    path = local_resume_path(resume, save_folder)
    checkpoint, problem = None, None
    if path is not None:
        try:
            checkpoint = read_checkpoint(path)
        except CheckpointError as exc:
            problem = str(exc)
    found = all_gather_objects((None if checkpoint is None else _epoch_of(checkpoint), problem))
    problems = [f"rank {rank}: {text}" if context.is_distributed else text for rank, (_, text) in enumerate(found) if text]
    if problems:
        raise CheckpointError("; ".join(problems))
    source = newest_rank([epoch for epoch, _ in found])
    if source is None:
        if resume is not None:
            where = " on any node" if context.is_distributed else ""
            raise CheckpointError(f"{parameter('resume')}: checkpoint not found{where}: {resume}")
        return None
    if not context.is_distributed:
        return ResumePoint(path, 0, checkpoint)
    # sent as torch.save bytes and read back with weights_only=True, as from a file
    payload = broadcast_object((str(path), _to_bytes(checkpoint)) if context.rank == source else None, src=source)
    if context.rank == source:
        return ResumePoint(path, source, checkpoint)
    source_path, data = payload
    return ResumePoint(Path(source_path), source, torch.load(io.BytesIO(data), map_location="cpu", weights_only=True))


def _to_bytes(checkpoint: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    return buffer.getvalue()
