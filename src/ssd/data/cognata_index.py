"""The Cognata index: every paired frame of the scanned folders with its parsed CSV rows, unfiltered.

Layout (spec section 2)::

    <root>/<scenario>/<camera>_png/<frame>.png
    <root>/<scenario>/<camera>_ann/<frame>.csv      columns looked up by name

Startup scans each (scenario, camera) folder once: images and CSVs are paired by frame name (an
unpaired file is a problem, never a shift), PNG headers give the image sizes and the CSVs are parsed
(in parallel processes when there are many). The parsed rows are cached per folder
(:mod:`ssd.data.index_cache`), unfiltered, so the rules of :mod:`ssd.data.cognata` (filters, label
maps and splits) are applied in memory.
"""
from __future__ import annotations

import csv
import logging
import math
import os
import struct
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ssd.data.index_cache import IndexCache, fingerprint
from ssd.data.problems import CorruptImageError, DataError, Problem

log = logging.getLogger(__name__)

IMAGE_SUFFIX = "_png"
ANNOTATION_SUFFIX = "_ann"
REQUIRED_COLUMNS = ("object_class", "object_class_name", "bounding_box_2D", "center_distance")
# uncached frames from which the CSV scan is spread over processes
PARALLEL_MIN_FRAMES = 512
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- reading one frame ----------------------------------------------------------------------------
def read_png_size(path: str | Path) -> tuple[int, int]:
    """(H, W) from a PNG header; raises :class:`CorruptImageError` for a file that is not a PNG."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(24)
    except OSError as exc:
        raise CorruptImageError(f"cannot read: {exc.strerror or exc}") from exc
    if len(header) < 24 or header[:8] != _PNG_SIGNATURE or header[12:16] != b"IHDR":
        raise CorruptImageError("not a PNG file (bad or truncated header)")
    width, height = struct.unpack(">II", header[16:24])
    if width == 0 or height == 0:
        raise CorruptImageError("PNG header gives an empty image")
    return height, width


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"[x1, y1, x2, y2]"`` -> four finite floats; ``ValueError`` otherwise (no ``eval``)."""
    inner = text.strip()
    if len(inner) < 2 or inner[0] + inner[-1] not in ("[]", "()"):
        raise ValueError(f"bounding_box_2D {text!r} is not [x1, y1, x2, y2]")
    parts = inner[1:-1].split(",")
    if len(parts) != 4:
        raise ValueError(f"bounding_box_2D {text!r} has {len(parts)} values, expected 4")
    values = tuple(float(p) for p in parts)
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"bounding_box_2D {text!r} is not finite")
    return values  # type: ignore[return-value]


def _parse_distance(text: str) -> float:
    """``center_distance``: a finite number (a NaN would pass the distance rule as near)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"center_distance {text.strip()!r} is not a finite number")
    return value


def _parse_int(text: str) -> int:
    value = float(text)
    if not value.is_integer():
        raise ValueError(f"object_class {text!r} is not an integer")
    return int(value)


@dataclass
class FrameScan:
    """One frame's parsed CSV rows (unfiltered) and the problems met; ``size`` None = unusable frame."""

    size: tuple[int, int] | None
    class_ids: list[int] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    distances: list[float] = field(default_factory=list)
    names: dict[int, str] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)


def scan_frame(root: str, image_rel: str, csv_rel: str) -> FrameScan:
    """Read one frame's PNG header and CSV. Module-level so worker processes can run it."""
    try:
        size = read_png_size(os.path.join(root, image_rel))
    except CorruptImageError as exc:
        return FrameScan(None, problems=[(image_rel, f"corrupt image: {exc}")])
    scan = FrameScan(size)
    try:
        with open(os.path.join(root, csv_rel), newline="", encoding="utf-8-sig") as handle:  # -sig: a BOM is no column name
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return FrameScan(None, problems=[(csv_rel, "empty annotation file: no header row")])
            header = [h.strip() for h in header]
            missing = [c for c in REQUIRED_COLUMNS if c not in header]
            if missing:
                return FrameScan(None, problems=[(csv_rel, f"missing column: {', '.join(missing)}")])
            ci, ni, bi, di = (header.index(c) for c in REQUIRED_COLUMNS)
            for row in reader:
                if not row:
                    continue
                if len(row) != len(header):
                    scan.problems.append((csv_rel, f"malformed row: line {reader.line_num} has {len(row)} fields, the header {len(header)}"))
                    continue
                try:
                    class_id, box, distance = _parse_int(row[ci]), parse_box(row[bi]), _parse_distance(row[di])
                except ValueError as exc:
                    scan.problems.append((csv_rel, f"malformed row: line {reader.line_num}: {exc}"))
                    continue
                scan.class_ids.append(class_id)
                scan.boxes.append(box)
                scan.distances.append(distance)
                scan.names.setdefault(class_id, row[ni].strip())
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        return FrameScan(None, problems=[(csv_rel, f"unreadable annotation file: {exc}")])
    return scan


def _scan_frames(root: str, pairs: list[tuple[str, str]], workers: int | None) -> list[FrameScan]:
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)
    if workers <= 1 or len(pairs) < PARALLEL_MIN_FRAMES:
        return [scan_frame(root, image, ann) for image, ann in pairs]
    log.info("scanning %d annotation files with %d processes", len(pairs), workers)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        images, anns = zip(*pairs)
        return list(pool.map(scan_frame, [root] * len(pairs), images, anns, chunksize=max(1, len(pairs) // (workers * 8))))


# -- the index of a whole selection -----------------------------------------------------------------
@dataclass
class CognataIndex:
    """Every paired frame of the scanned folders, sorted by image path, with its parsed CSV rows.

    Frame ``i`` owns rows ``offsets[i]:offsets[i + 1]`` of ``class_ids``, ``boxes`` (xyxy pixels as
    written) and ``distances``. ``problems`` are the scan's bad inputs (unpaired files, corrupt
    headers, unreadable CSVs, malformed rows).
    """

    root: Path
    images: list[str]
    annotations: list[str]
    sizes: np.ndarray  # [F, 2] (H, W)
    offsets: np.ndarray  # [F + 1]
    class_ids: np.ndarray  # [O] int64
    boxes: np.ndarray  # [O, 4] float32
    distances: np.ndarray  # [O] float32
    class_names: dict[int, str]
    problems: list[Problem]

    def __len__(self) -> int:
        return len(self.images)

    @property
    def frame_of_object(self) -> np.ndarray:
        return np.repeat(np.arange(len(self.images)), np.diff(self.offsets))


def _list_files(folder: Path, suffix: str) -> dict[str, os.DirEntry]:
    """Frame name -> entry of the ``*suffix`` files in ``folder`` (empty when it does not exist)."""
    if not folder.is_dir():
        return {}
    with os.scandir(folder) as entries:
        return {e.name[: -len(suffix)]: e for e in entries if e.name.endswith(suffix) and e.is_file()}


def _camera_names(scenario: Path) -> list[str]:
    """Cameras with an image or an annotation folder in ``scenario``."""
    names = set()
    for child in scenario.iterdir():
        for suffix in (IMAGE_SUFFIX, ANNOTATION_SUFFIX):
            if child.name.endswith(suffix) and child.is_dir():
                names.add(child.name[: -len(suffix)])
    return sorted(names)


def _discover(root: Path, folders: Sequence[str], cameras: Sequence[str]) -> tuple[list[tuple[str, str]], list[Problem]]:
    """(scenario, camera) folders to scan, sorted; configured ones that are missing are problems."""
    problems = []
    if folders:
        scenarios = sorted(set(folders))
        for name in scenarios:
            if not (root / name).is_dir():
                problems.append(Problem(str(root / name), "missing scenario folder"))
        scenarios = [s for s in scenarios if (root / s).is_dir()]
    else:
        scenarios = sorted(p.name for p in root.iterdir() if p.is_dir() and _camera_names(p))
    selected = []
    for scenario in scenarios:
        for camera in sorted(set(cameras)) if cameras else _camera_names(root / scenario):
            if not (root / scenario / f"{camera}{IMAGE_SUFFIX}").is_dir() and not (root / scenario / f"{camera}{ANNOTATION_SUFFIX}").is_dir():
                problems.append(Problem(str(root / scenario / f"{camera}{IMAGE_SUFFIX}"), "missing camera folder"))
                continue
            selected.append((scenario, camera))
    return selected, problems


def scan_cognata(
    root: str | Path,
    folders: Sequence[str] = (),
    cameras: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    workers: int | None = None,
) -> CognataIndex:
    """Index the frames of ``folders`` x ``cameras`` under ``root`` (all that exist when empty).

    Raises :class:`DataError` naming ``root`` when it is not a folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: dataset folder does not exist")
    selected, problems = _discover(root, folders, cameras)
    cache = IndexCache(cache_dir)
    parts: dict[tuple[str, str], tuple[dict, dict[str, np.ndarray]]] = {}
    pending = []  # folders to scan: (scenario, camera, key, pairs, pairing problems)
    for scenario, camera in selected:
        png_dir, ann_dir = root / scenario / f"{camera}{IMAGE_SUFFIX}", root / scenario / f"{camera}{ANNOTATION_SUFFIX}"
        pngs, csvs = _list_files(png_dir, ".png"), _list_files(ann_dir, ".csv")
        key = fingerprint([(f"png/{n}", e.stat()) for n, e in pngs.items()] + [(f"ann/{n}", e.stat()) for n, e in csvs.items()])
        cached = cache.load(root / scenario, camera, key)
        if cached is not None:
            parts[(scenario, camera)] = cached
            continue
        pairing = [Problem(f"{scenario}/{png_dir.name}/{n}.png", "image without annotation file") for n in sorted(pngs.keys() - csvs.keys())]
        pairing += [Problem(f"{scenario}/{ann_dir.name}/{n}.csv", "annotation file without image") for n in sorted(csvs.keys() - pngs.keys())]
        frames = sorted(pngs.keys() & csvs.keys())
        pairs = [(f"{scenario}/{png_dir.name}/{n}.png", f"{scenario}/{ann_dir.name}/{n}.csv") for n in frames]
        pending.append((scenario, camera, key, pairs, pairing))

    scans = _scan_frames(str(root), [pair for job in pending for pair in job[3]], workers)
    position = 0
    for scenario, camera, key, pairs, pairing in pending:
        part = _pack(pairs, scans[position : position + len(pairs)], pairing)
        position += len(pairs)
        cache.save(root / scenario, camera, key, *part)
        parts[(scenario, camera)] = part
    return _merge(root, [parts[s] for s in selected], problems)


def _pack(pairs: list[tuple[str, str]], scans: list[FrameScan], pairing: list[Problem]) -> tuple[dict, dict[str, np.ndarray]]:
    """One folder's scans -> (JSON-able meta, arrays): the cache entry layout."""
    usable = [(pair, scan) for pair, scan in zip(pairs, scans) if scan.size is not None]
    names: dict[int, str] = {}
    for scan in scans:
        for class_id, name in scan.names.items():
            names.setdefault(class_id, name)
    meta = {
        "images": [image for (image, _), _ in usable],
        "annotations": [ann for (_, ann), _ in usable],
        "class_names": {str(k): v for k, v in names.items()},
        "problems": [[p.path, p.reason] for p in pairing] + [list(p) for scan in scans for p in scan.problems],
    }
    counts = [len(scan.class_ids) for _, scan in usable]
    arrays = {
        "sizes": np.array([scan.size for _, scan in usable], dtype=np.int64).reshape(-1, 2),
        "offsets": np.concatenate(([0], np.cumsum(counts, dtype=np.int64))),
        "class_ids": np.array([c for _, scan in usable for c in scan.class_ids], dtype=np.int64),
        "boxes": np.array([b for _, scan in usable for b in scan.boxes], dtype=np.float32).reshape(-1, 4),
        "distances": np.array([d for _, scan in usable for d in scan.distances], dtype=np.float32),
    }
    return meta, arrays


def _merge(root: Path, parts: list[tuple[dict, dict[str, np.ndarray]]], problems: list[Problem]) -> CognataIndex:
    images, annotations, names = [], [], {}
    for meta, _ in parts:
        images += meta["images"]
        annotations += meta["annotations"]
        for key, value in meta["class_names"].items():
            names.setdefault(int(key), value)
        problems = problems + [Problem(str(root / path), reason) for path, reason in meta["problems"]]
    arrays = [a for _, a in parts]
    counts = np.concatenate([np.diff(a["offsets"]) for a in arrays]) if arrays else np.zeros(0, np.int64)
    return CognataIndex(
        root=root,
        images=images,
        annotations=annotations,
        sizes=np.concatenate([a["sizes"] for a in arrays]) if arrays else np.zeros((0, 2), np.int64),
        offsets=np.concatenate(([0], np.cumsum(counts, dtype=np.int64))),
        class_ids=np.concatenate([a["class_ids"] for a in arrays]) if arrays else np.zeros(0, np.int64),
        boxes=np.concatenate([a["boxes"] for a in arrays]) if arrays else np.zeros((0, 4), np.float32),
        distances=np.concatenate([a["distances"] for a in arrays]) if arrays else np.zeros(0, np.float32),
        class_names=names,
        problems=problems,
    )
