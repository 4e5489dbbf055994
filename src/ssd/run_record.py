"""What a LoadGen run ran: the model, config, decoding, data and settings, kept beside its logs.

``ssd loadgen`` writes ``ssd_run.json`` into its output folder with the LoadGen logs. A compliance
test compares a run with the accuracy and performance runs it audits, and a submission tree takes
logs only from runs of one model under one config and one set of rules, so both read these records
rather than trusting folder names: a log whose record differs is refused, naming what differs.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ssd.atomic_file import write_atomically
from ssd.errors import SSDError

RECORD_NAME = "ssd_run.json"
MODES = ("accuracy", "performance", "TEST01")
# what two runs must share to be parts of one submission (every mode), and what a performance run and
# the compliance run that audits its speed must share as well
SHARED = ("scenario", "model", "config", "decode", "dataset", "mlperf_conf", "user_conf")
SHARED_WITH_TIMING = (*SHARED, "device", "batch_size", "overrides")


class RunRecordError(SSDError):
    """A run folder without a readable record, or runs that are not of the same model and settings."""


def file_digest(path: str | Path) -> str:
    """The SHA-256 of a file's bytes (a model's identity, whatever its name)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RunRecord:
    """One ``ssd loadgen`` run. ``model``: the weights' file name and SHA-256, engine and precision;
    ``config``: name and SHA-256 of its text; ``dataset``: kind, split, samples and the file list's
    SHA-256; ``mlperf_conf`` / ``user_conf``: the settings files' texts (None: no user.conf);
    ``overrides``: the trial flags' values; ``command``: the arguments it was run with."""

    mode: str
    scenario: str
    model: dict[str, Any]
    config: dict[str, Any]
    decode: dict[str, Any]
    dataset: dict[str, Any]
    mlperf_conf: str
    user_conf: str | None
    overrides: dict[str, Any]
    device: str
    batch_size: int
    command: list[str] = field(default_factory=list)
    software: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise RunRecordError(f"run mode {self.mode!r}: expected one of {', '.join(MODES)}")

    def differences(self, other: RunRecord, fields: tuple[str, ...] = SHARED) -> list[str]:
        """The names of ``fields`` whose values differ between the two runs."""
        return [name for name in fields if getattr(self, name) != getattr(other, name)]

    def write(self, folder: str | Path) -> Path:
        """Write the record into ``folder`` (whole or not at all)."""
        path = Path(folder) / RECORD_NAME
        write_atomically(path, (json.dumps(asdict(self), indent=2) + "\n").encode())
        return path


def read_record(folder: str | Path) -> RunRecord:
    """The record of the run in ``folder``; raises :class:`RunRecordError` naming the folder."""
    path = Path(folder) / RECORD_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunRecordError(f"{folder}: no {RECORD_NAME}: not the output folder of an `ssd loadgen` run") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunRecordError(f"{path}: not a readable run record: {exc}") from exc
    try:
        return RunRecord(**raw)
    except TypeError as exc:
        raise RunRecordError(f"{path}: not a run record of this version of ssd: {exc}") from exc


def require_same(records: dict[str, RunRecord], fields: tuple[str, ...] = SHARED) -> None:
    """Raise :class:`RunRecordError` unless every record agrees with the first on ``fields``,
    naming the runs and what differs."""
    (first_name, first), *others = records.items()
    for name, record in others:
        differing = first.differences(record, fields)
        if differing:
            shown = "; ".join(f"{key}: {_short(getattr(first, key))} against {_short(getattr(record, key))}" for key in differing)
            raise RunRecordError(f"the {name} run is not of the same model and settings as the {first_name} run ({shown})")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    text = " ".join(text.split())
    return text if len(text) <= 60 else text[:57] + "..."
