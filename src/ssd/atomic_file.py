"""Files written whole or not at all: a temporary file in the same folder, renamed into place. The
one helper every output goes through (checkpoints, index caches, detections, images, logs' snapshots).

A run killed while writing leaves the old file (or none) and at worst a hidden ``.NAME.PID.tmp``
beside it (:func:`temporary_name`, the one scheme; :func:`remove_stale_temporaries` clears those of
dead processes), never half a file under the real name; a write that fails (a full disk) leaves the
old file and reports the fault as one of the real name. ``durable``: the data and the rename reach
the disk (fsync of the file and of its folder) before the call returns, for files a run resumes from.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def temporary_name(path: Path, pid: int | None = None) -> Path:
    """The temporary file a process writes ``path`` through: ``.NAME.PID.tmp`` beside it."""
    return path.with_name(f".{path.name}.{os.getpid() if pid is None else pid}.tmp")


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", *, durable: bool = False, **open_options: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing (``mode``, ``open``'s other options), and put it in place of
    ``path`` when the block ends without an exception; on an exception, remove it and keep ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    try:
        with as_fault_of(path, temporary), open(temporary, mode, **open_options) as handle:
            yield handle
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        with as_fault_of(path, temporary):
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    if durable:
        folder = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def remove_stale_temporaries(folder: Path, pattern: str = "*") -> list[Path]:
    """Delete the temporary files (of names ``pattern``) that processes no longer running left in
    ``folder`` when they were killed mid-write; return them."""
    removed = []
    for candidate in folder.glob(f".{pattern}.*.tmp"):
        pid = candidate.name.rsplit(".", 2)[1]
        if pid.isdigit() and not process_alive(int(pid)):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def process_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


@contextlib.contextmanager
def as_fault_of(path: Path, temporary: Path) -> Iterator[None]:
    """Report a fault in writing ``temporary`` (a full disk, a read-only folder) as one of ``path``,
    the file the user asked for."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None and Path(exc.filename) != temporary:
            raise
        raise type(exc)(exc.errno, exc.strerror, str(path)) from exc


def write_atomically(path: str | Path, data: bytes | memoryview, *, durable: bool = False) -> None:
    """``data`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path, durable=durable) as handle:
        handle.write(data)
