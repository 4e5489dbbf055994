"""The project's exception base, and faults of the machine in words: the CLI turns both into one
clear line and a non-zero exit."""
from __future__ import annotations

import errno
import os


class SSDError(Exception):
    """A user-facing error (bad input file, bad config, mismatched checkpoint)."""


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
