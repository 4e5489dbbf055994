"""One run per folder it writes (a training run's save folder, a prediction's or evaluation's output
folder): a lock file naming the run that holds it.

``{folder}/.lock`` holds the process id, host and start time of the run writing the folder.
A second run on the same folder is refused with an error naming that run; a lock left by a run that
was killed (its process is gone, on this host) is stale and taken over, with a message. A lock of
another host cannot be checked: the error says which file to remove once that run is gone.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Any

from ssd.atomic_file import process_alive
from ssd.errors import SSDError

logger = logging.getLogger(__name__)

LOCK_NAME = ".lock"


class FolderInUseError(SSDError):
    """Another run holds the save folder."""


class RunLock:
    """The lock of one save folder; a context manager (:meth:`acquire` on entry, :meth:`release` on exit)."""

    def __init__(self, folder: Path):
        self.path = Path(folder) / LOCK_NAME
        self.owner = {"pid": os.getpid(), "host": socket.gethostname()}

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock, taking over a stale one; raise :class:`FolderInUseError` if a live run holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):  # a run that takes over a stale lock at the same moment can win the race
            try:
                descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._check_holder()
                continue
            try:
                with os.fdopen(descriptor, "w") as handle:
                    json.dump({**self.owner, "started": time.strftime("%Y-%m-%d %H:%M:%S")}, handle)
            except OSError as exc:  # a full disk: no half-written lock left, and the fault names the lock
                self.path.unlink(missing_ok=True)
                raise type(exc)(exc.errno, exc.strerror, str(self.path)) from exc
            return
        raise FolderInUseError(f"{self.path.parent}: could not take the lock {self.path}")

    def _check_holder(self) -> None:
        """Remove the lock if its run is gone (or is this process); raise if it runs."""
        try:
            holder = json.loads(self.path.read_text())
            pid, host = int(holder["pid"]), str(holder["host"])
        except FileNotFoundError:
            return  # released meanwhile
        except (OSError, ValueError, KeyError, TypeError):
            holder, pid, host = {}, -1, self.owner["host"]  # unreadable (killed while writing it): stale
        if host != self.owner["host"]:
            raise FolderInUseError(
                f"{self.path.parent}: in use by run {pid} on host {host} (since {holder.get('started', '?')}); "
                f"if that run is gone, remove {self.path}"
            )
        if pid != self.owner["pid"] and pid > 0 and process_alive(pid):
            raise FolderInUseError(
                f"{self.path.parent}: in use by another run (process {pid}, since {holder.get('started', '?')}); "
                "wait for it or choose another folder"
            )
        logger.warning("%s: taking over the lock of run %s, which is no longer running", self.path.parent, pid if pid > 0 else "?")
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        try:
            holder = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return
        if holder.get("pid") == self.owner["pid"] and holder.get("host") == self.owner["host"]:
            self.path.unlink(missing_ok=True)
