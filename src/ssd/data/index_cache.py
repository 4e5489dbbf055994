"""A small on-disk cache for dataset indexes (parsed annotations), keyed on the files they came from.

Scanning tens of thousands of annotation files takes minutes; the result is saved next to the data
(``<folder>/.ssd_index_<name>.npz``) or, where that folder is read-only, in a cache folder given by
the caller. Entries are numpy arrays plus a JSON header, written atomically and read with
``allow_pickle=False``. The key is a hash of the file names, sizes, modification and change times
and inodes, so any added, removed or rewritten file makes the entry stale and it is rebuilt, even one
rewritten with its size and modification time kept (``cp -p``, ``rsync -a``, ``touch -r``: setting a
modification time changes the change time, which no tool can set).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from ssd.atomic_file import atomic_write

log = logging.getLogger(__name__)

# bump when the layout of cached entries changes
FORMAT_VERSION = 3  # 2: rows with a non-finite center_distance are problems, CSVs may start with a BOM; 3: ctime and inode in the key
_META = "__meta__"


def fingerprint(files: Iterable[tuple[str, os.stat_result]]) -> str:
    """Hash of (name, size, mtime, ctime, inode) of ``files``, the cache key of an index built from them.

    Names are relative (e.g. ``png/0000011333.png``) so a moved dataset keeps its cache.
    """
    digest = hashlib.sha1(f"ssd-index-v{FORMAT_VERSION}".encode())
    for name, stat in sorted(files, key=lambda item: item[0]):
        digest.update(f"{name}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ctime_ns}|{stat.st_ino}\n".encode())
    return digest.hexdigest()


class IndexCache:
    """Load and store index entries for data folders.

    Args:
        fallback_dir: where entries go when a data folder is not writable; ``None`` disables caching
            for such folders.
    """

    def __init__(self, fallback_dir: str | Path | None = None):
        self.fallback_dir = Path(fallback_dir) if fallback_dir is not None else None

    def _candidates(self, folder: Path, name: str) -> list[Path]:
        paths = [folder / f".ssd_index_{name}.npz"]
        if self.fallback_dir is not None:
            tag = hashlib.sha1(str(folder.resolve()).encode()).hexdigest()[:16]
            paths.append(self.fallback_dir / f"{tag}_{name}.npz")
        return paths

    def load(self, folder: Path, name: str, key: str) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """The entry ``(meta, arrays)`` for ``folder``/``name`` when present and keyed ``key``, else None."""
        for path in self._candidates(folder, name):
            if not path.is_file():
                continue
            try:
                with np.load(path, allow_pickle=False) as npz:
                    arrays = {k: npz[k] for k in npz.files}
                meta = json.loads(arrays.pop(_META).tobytes().decode())
            except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
                log.warning("ignoring unreadable index cache %s: %s", path, exc)
                continue
            if meta.get("key") == key:
                log.debug("index cache hit: %s", path)
                return meta, arrays
            log.debug("index cache stale: %s", path)
        return None

    def save(self, folder: Path, name: str, key: str, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> Path | None:
        """Store an entry; returns where it went, or None when no location is writable."""
        payload = dict(arrays)
        payload[_META] = np.frombuffer(json.dumps({**meta, "key": key}).encode(), dtype=np.uint8)
        for path in self._candidates(folder, name):
            try:
                with atomic_write(path) as handle:
                    np.savez(handle, **payload)
            except OSError as exc:
                log.debug("cannot write index cache %s: %s", path, exc)
                continue
            return path
        log.info("index of %s not cached: folder read-only and no cache folder given", folder)
        return None
