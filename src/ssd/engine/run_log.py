"""What runs record: TensorBoard scalars and images, and CSV files of one row per epoch."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from ssd.errors import SSDError


def append_row(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to a CSV file, writing the header first when the file is new.

    A file whose header differs from ``row``'s columns (another run's, another dataset's) is an
    error naming it: rows under the wrong header would be silently wrong.
    """
    new = not path.is_file() or path.stat().st_size == 0
    if not new:
        with path.open(newline="") as handle:
            header = next(csv.reader(handle), [])
        if header != list(row):
            raise SSDError(f"{path}: its columns differ from this run's (another config or dataset?): move it away")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


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

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
