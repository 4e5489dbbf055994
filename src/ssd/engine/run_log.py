"""What runs record: TensorBoard scalars and images, and CSV files of one row per epoch."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from ssd.atomic_file import atomic_write
from ssd.errors import SSDError


def _check_columns(path: Path, header: list[str], columns: list[str]) -> None:
    """Rows under another file's header would be silently wrong: refuse, naming the file."""
    if header != columns:
        raise SSDError(f"{path}: its columns differ from this run's (another config or dataset?): move it away")


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to a CSV file, writing the header first when the file is new.

    A file whose header differs from ``row``'s columns (another run's, another dataset's) is an
    error naming it: rows under the wrong header would be silently wrong.
    """
    new = not path.is_file() or path.stat().st_size == 0
    if not new:
        with path.open(newline="") as handle:
            _check_columns(path, next(csv.reader(handle), []), list(row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def restore_rows(path: Path, finished_epochs: int, last_row: dict[str, Any] | None) -> None:
    """Make a resumed run's CSV hold exactly one row per finished epoch (``0 .. finished_epochs - 1``).

    A kill can come between an epoch's checkpoint and its row (the row is lost; ``last_row``, the
    checkpoint's copy of it, is restored), and ``--resume`` from an older checkpoint leaves rows of
    epochs it will train again (dropped). Repeated rows of one epoch keep the last. The file is
    replaced atomically; a file with other columns than ``last_row``'s is an error, as in :func:`append_row`.
    """
    if not path.is_file() or path.stat().st_size == 0:
        rows, header = [], list(last_row or {})
    else:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            header, rows = list(reader.fieldnames or []), list(reader)
        if last_row is not None:
            _check_columns(path, header, list(last_row))
    by_epoch = {int(row["epoch"]): row for row in rows if row.get("epoch", "").isdigit() and int(row["epoch"]) < finished_epochs}
    if last_row is not None and finished_epochs - 1 not in by_epoch:
        by_epoch[finished_epochs - 1] = last_row
    if not header or [by_epoch[e] for e in sorted(by_epoch)] == rows:
        return
    with atomic_write(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=header)
        writer.writeheader()
        writer.writerows(by_epoch[e] for e in sorted(by_epoch))


class RunLog:
    """TensorBoard + CSV writer for the main process; every method is a no-op on other ranks."""

    def __init__(self, csv_path: Path, tensorboard_dir: Path | None, enabled: bool):
        self.enabled = enabled
        self.csv_path = csv_path
        self.writer = None
        if enabled and tensorboard_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(tensorboard_dir))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if self.writer is not None:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)

    def images(self, tag: str, images: torch.Tensor, step: int) -> None:
        """``images [N, 3, H, W]`` uint8."""
        if self.writer is not None:
            self.writer.add_images(tag, images, step, dataformats="NCHW")

    def epoch_row(self, row: dict[str, float | int | str]) -> None:
        """Append one row (:func:`append_row`)."""
        if self.enabled:
            append_row(self.csv_path, row)

    def restore(self, finished_epochs: int, last_row: dict[str, Any] | None) -> None:
        """On resume: one CSV row per finished epoch (:func:`restore_rows`)."""
        if self.enabled:
            restore_rows(self.csv_path, finished_epochs, last_row)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
