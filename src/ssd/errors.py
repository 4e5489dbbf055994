"""The project's exception base, and faults of the machine in words: the CLI turns both into one
clear line and a non-zero exit.

A library message names the parameters it is about as :func:`parameter` marks them: read from Python,
the parameter's own name (``device cuda:3: ...``); printed by the CLI, the flag that sets it
(``--device cuda:3: ...``, :meth:`SSDError.naming`). So the library never speaks in flags.
"""
from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable

_MARK = "\x1f"  # the ASCII unit separator: never in a path or value a message quotes
_MARKED = re.compile(f"{_MARK}([A-Za-z_][A-Za-z0-9_]*){_MARK}")


def parameter(name: str) -> str:
    """``name`` (a parameter of the library's API) marked in a message, for :meth:`SSDError.naming`."""
    return f"{_MARK}{name}{_MARK}"


class SSDError(Exception):
    """A user-facing error (bad input file, bad config, mismatched checkpoint)."""

    def __str__(self) -> str:
        return self.naming(str)

    def naming(self, name_of: Callable[[str], str]) -> str:
        """The message with each :func:`parameter` as ``name_of(name)`` (the CLI: its flag)."""
        return _MARKED.sub(lambda match: name_of(match.group(1)), super().__str__())


# what an errno means for the user, in words (strerror's "File exists" does not say what is wrong)
_FAULTS = {
    errno.ENOSPC: "no space left on the device (the disk is full)",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EISDIR: "is a folder, not a file",
    errno.ELOOP: "too many levels of symbolic links (a link loop)",
    errno.ENAMETOOLONG: "the name is too long",
    errno.EIO: "input/output error (a failing disk or network file system)",
    errno.EMFILE: "too many open files",
}


def describe_os_error(exc: OSError) -> str:
    """One line for a fault of the machine: the path(s) and what is wrong, in words."""
    if exc.errno == errno.EEXIST:
        path = exc.filename
        words = "exists and is not a folder" if path is not None and os.path.lexists(path) and not os.path.isdir(path) else "already exists"
    else:
        words = _FAULTS.get(exc.errno, exc.strerror or str(exc))
    paths = [str(name) for name in (exc.filename, exc.filename2) if name is not None]
    return f"{' -> '.join(paths)}: {words}" if paths else words
