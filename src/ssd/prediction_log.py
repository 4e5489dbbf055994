"""The detections of a many-image prediction run, written as they come and read back to resume.

Each finished image appends one JSON line (its record) to ``detections.jsonl`` after its drawn
output was written (atomically), so a killed run keeps every image it finished and the line that
says so; ``--resume`` reads the lines back (a last line cut by the kill is ignored) and skips the
images whose record and output are both there. At the end the records, in input order, also go to
``detections.json``. A video's ``<output>.jsonl`` (a line per frame) is read back by
:func:`finished_video_frames`.

A log records what produced it: its first line is a header with the run's identity (the model's and
the config's SHA-256, engine, precision, decoding and drawing settings, and for a video the video's
own), and each image's line the size and modification time its input had. A log is resumed only
under the same identity (anything else is refused: the results of two runs would mix), and every
line read back is checked as fresh input: a record that is not one, or whose input has changed
since, is done again.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ssd.errors import SSDError

HEADER = "ssd_prediction_log"  # the key of a log's first line
SOURCE = "source"  # an image line's [size, modification time in ns] of its input


class PredictionLogError(SSDError):
    """A log that cannot be resumed: written by another run, or not by ``ssd predict``."""


def header_line(run: dict[str, Any]) -> str:
    """The first line of a log of ``run``."""
    return json.dumps({HEADER: 1, "run": run}) + "\n"


def _records_after_header(path: Path, run: dict[str, Any]) -> list[str]:
    """The lines of the log at ``path`` after its header; raise unless the header is of ``run``."""
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    if not lines:
        return []
    try:
        header = json.loads(lines[0])
    except json.JSONDecodeError:
        header = None
    if not (isinstance(header, dict) and isinstance(header.get("run"), dict) and HEADER in header):
        raise PredictionLogError(f"{path}: not a log of an `ssd predict` run that says what produced it; it cannot be resumed")
    recorded = header["run"]
    differing = sorted(key for key in set(recorded) | set(run) if recorded.get(key) != run.get(key))
    if differing:
        raise PredictionLogError(f"{path}: written by another run ({', '.join(differing)} differ); resuming would mix the two runs' results")
    return lines[1:]


def _input_identity(image: str) -> list[int] | None:
    try:
        status = os.stat(image)
    except OSError:
        return None
    return [status.st_size, status.st_mtime_ns]


def _end_last_line(path: Path) -> None:
    """End the log's last line if a kill cut it short, so that the next record starts a line of its own."""
    with path.open("rb+") as handle:
        size = handle.seek(0, os.SEEK_END)
        if size:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                handle.write(b"\n")


class PredictionLog:
    """``detections.jsonl`` of a run: :meth:`finished` records (``resume``) and :meth:`append`."""

    def __init__(self, path: Path, resume: bool, run: dict[str, Any]):
        self.path = path
        self.finished: dict[str, dict[str, Any]] = self._read(run) if resume and path.is_file() else {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if not resume or not path.is_file() or path.stat().st_size == 0:
            path.write_text(header_line(run))
        else:
            _end_last_line(path)  # after _read has checked that the file is this run's log
        self._handle = path.open("a", encoding="utf-8")

    def _read(self, run: dict[str, Any]) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        for line in _records_after_header(self.path, run):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line a kill cut short
            if _is_image_record(record) and record.pop(SOURCE) == _input_identity(record["image"]):
                records[record["image"]] = record
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Add one finished image's record (flushed, so a kill right after keeps it)."""
        self._handle.write(json.dumps({**record, SOURCE: _input_identity(record["image"])}) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _is_image_record(record: Any) -> bool:
    """A line as :meth:`PredictionLog.append` writes it, whose drawn output is there."""
    return (isinstance(record, dict) and isinstance(record.get("image"), str) and isinstance(record.get("output"), str)
            and Path(record["output"]).is_file() and all(_is_count(record.get(key)) for key in ("height", "width"))
            and isinstance(record.get("detections"), list) and all(_is_detection(d) for d in record["detections"])
            and isinstance(record.get(SOURCE), list))


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def finished_video_frames(path: Path, run: dict[str, Any]) -> list[dict[str, Any]]:
    """The frame records of an interrupted video prediction's ``<output>.jsonl`` of ``run``: lines 0, 1,
    ... up to the first that is cut short (the kill's), not a record or out of sequence; ``[]``
    without the file; raises :class:`PredictionLogError` for a log of another run (another video)."""
    if not path.is_file():
        return []
    frames: list[dict[str, Any]] = []
    for line in _records_after_header(path, run):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            break
        if not (isinstance(record, dict) and record.get("frame") == len(frames) and isinstance(record.get("detections"), list)
                and all(_is_detection(detection) for detection in record["detections"])):
            break
        frames.append(record)
    return frames


def _is_detection(detection: Any) -> bool:
    """A detection as ``ssd.inference.detection_records`` writes it: a box of 4 numbers, a score, a label and a name."""
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    return (isinstance(detection, dict) and isinstance(detection.get("box"), list) and len(detection["box"]) == 4
            and all(number(v) for v in detection["box"]) and number(detection.get("score"))
            and isinstance(detection.get("label"), int) and not isinstance(detection.get("label"), bool) and isinstance(detection.get("name"), str))
