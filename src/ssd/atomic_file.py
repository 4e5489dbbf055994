"""Files written whole or not at all: a temporary file in the same folder, renamed into place.

A run killed while writing leaves the old file (or none) and at worst a hidden ``.NAME.PID.tmp``
beside it, never half a file under the real name; a write that fails (a full disk) leaves the old
file and reports the fault as one of the real name. Checkpoints have their own variant with fsync and
stale-temporary cleanup (:func:`ssd.checkpoint.atomic_save`).
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_options: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing (``mode``, ``open``'s other options), and put it in place of
    ``path`` when the block ends without an exception; on an exception, remove it and keep ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with as_fault_of(path, temporary), open(temporary, mode, **open_options) as handle:
            yield handle
        with as_fault_of(path, temporary):
            os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


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


def write_atomically(path: str | Path, data: bytes) -> None:
    """``data`` to ``path`` through :func:`atomic_write`."""
    with atomic_write(path) as handle:
        handle.write(data)
