"""What a training run records: TensorBoard scalars and images, and one CSV row per epoch."""
from __future__ import annotations

import csv
from pathlib import Path

import torch


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
        """Append one row; a resumed run keeps the header the file already has."""
        if not self.enabled:
            return
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        exists = self.csv_path.is_file() and self.csv_path.stat().st_size > 0
        if exists:
            with open(self.csv_path, newline="") as handle:
                fieldnames = next(csv.reader(handle))
        else:
            fieldnames = list(row)
        with open(self.csv_path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fieldnames, extrasaction="ignore")
            if not exists:
                writer.writeheader()
            writer.writerow(row)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
