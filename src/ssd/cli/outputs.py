"""What a command writes: never one of its inputs, and a folder of outputs held by one run at a time.

Every command that writes checks, before any work, that no file it will write is one of the files
it reads (the same path, a link to it, or a hard link), and that a folder it fills is not a folder
it reads images from; and it holds the folder it writes with the training run's lock (``.lock``, the
process that holds it), so two runs into one folder are refused rather than mixed.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ssd.errors import SSDError


def _identity(path: Path) -> tuple[str, ...]:
    """What makes two paths one file: the resolved path, and (dev, inode) when it exists."""
    keys = [str(path.resolve())]
    with contextlib.suppress(OSError):
        status = os.stat(path)
        keys.append(f"{status.st_dev}:{status.st_ino}")
    return tuple(keys)


def refuse_overwriting(outputs: Iterable[Path], inputs: Iterable[Path], flag: str = "--output") -> None:
    """Raise :class:`SSDError` if one of ``outputs`` is one of ``inputs`` (resolved, or the same inode)."""
    known: dict[str, Path] = {}
    for source in inputs:
        for key in _identity(Path(source)):
            known.setdefault(key, Path(source))
    for output in outputs:
        source = next((known[key] for key in _identity(Path(output)) if key in known), None)
        if source is not None:
            raise SSDError(f"{flag} {output}: would write over the input {source}; choose another output")


def refuse_folder_of_inputs(folder: Path, input_folder: Path, flag: str = "--output") -> None:
    """Raise :class:`SSDError` if the output ``folder`` is the folder the inputs are read from (the
    drawn copies would mix with them, or replace those of the same name)."""
    if set(_identity(folder)) & set(_identity(input_folder)):
        raise SSDError(f"{flag} {folder}: is the folder the input images are read from; choose another output folder")


@contextlib.contextmanager
def holding(folder: Path) -> Iterator[None]:
    """Hold ``folder`` for this run (its ``.lock``); a live run holding it already is one error line."""
    from ssd.engine.run_lock import RunLock

    with RunLock(folder):
        yield
