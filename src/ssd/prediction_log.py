"""The detections of a many-image prediction run, written as they come and read back to resume.

Each finished image appends one JSON line (its record) to ``detections.jsonl`` after its drawn
output was written (atomically), so a killed run keeps every image it finished and the line that
says so; ``--resume`` reads the lines back (a last line cut by the kill is ignored) and skips the
images whose record and output are both there. At the end the records, in input order, also go to
``detections.json``. A video's ``<output>.jsonl`` (a line per frame) is read back by
:func:`finished_video_frames`.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class PredictionLog:
    """``detections.jsonl`` of a run: :meth:`finished` records (``resume``) and :meth:`append`."""

    def __init__(self, path: Path, resume: bool):
        self.path = path
        self.finished: dict[str, dict[str, Any]] = self._read() if resume else {}
        path.parent.mkdir(parents=True, exist_ok=True)
        if not resume or not path.is_file():
            path.write_text("")
        self._handle = path.open("a", encoding="utf-8")

    def _read(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return records
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # the line a kill cut short
            if isinstance(record, dict) and Path(str(record.get("output", ""))).is_file():
                records[str(record.get("image"))] = record
        return records

    def append(self, record: dict[str, Any]) -> None:
        """Add one finished image's record (flushed, so a kill right after keeps it)."""
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def finished_video_frames(path: Path) -> list[dict[str, Any]]:
    """The frame records of an interrupted video prediction's ``<output>.jsonl``: lines 0, 1, ... up to
    the first that is cut short (the kill's), not a record or out of sequence; ``[]`` without the file."""
    if not path.is_file():
        return []
    frames: list[dict[str, Any]] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
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
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    return (isinstance(detection, dict) and isinstance(detection.get("box"), list) and len(detection["box"]) == 4
            and all(number(v) for v in detection["box"]) and number(detection.get("score"))
            and isinstance(detection.get("label"), int) and not isinstance(detection.get("label"), bool) and isinstance(detection.get("name"), str))
