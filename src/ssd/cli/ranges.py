"""Every numeric flag's range, declared once: argparse types that refuse what a flag cannot mean.

A flag's ``type=`` is one of the ranges below, so a value outside it (``--cls-threshold nan``,
``--nms-threshold -1``, ``--text-size -5``, ``--time inf``) is refused while the command line is
parsed, before any model loads or file is written, with argparse's one ``error:`` line naming the
flag, the range and the value. Floats must be finite.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Number:
    """``kind`` (int or float) from ``low`` to ``high`` (None: unbounded; ``*_open``: the bound itself excluded)."""

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    meaning: str = "a number"

    @property
    def __name__(self) -> str:  # argparse names a type by it in its messages
        return self.meaning

    def describe(self) -> str:
        whole = "a whole number" if self.kind is int else "a finite number"
        if self.low is not None and self.high is not None:
            return f"{whole} {'above' if self.low_open else 'from'} {self.low:g} {'and below' if self.high_open else 'to'} {self.high:g}"
        if self.low is not None:
            return f"{whole} {'above' if self.low_open else 'of at least'} {self.low:g}"
        return whole

    def __call__(self, text: str) -> int | float:
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{self.meaning} must be {self.describe()}, got {text!r}") from None
        inside = math.isfinite(value)
        if inside and self.low is not None:
            inside = value > self.low if self.low_open else value >= self.low
        if inside and self.high is not None:
            inside = value < self.high if self.high_open else value <= self.high
        if not inside:
            raise argparse.ArgumentTypeError(f"{self.meaning} must be {self.describe()}, got {text}")
        return value


COUNT = Number(int, 1, meaning="a count")  # epochs, batch sizes, samples, detections, queries
WORKERS = Number(int, 0, meaning="a number of processes")
RANK = Number(int, 0, meaning="a rank")
SEED = Number(int, 0, 2**63 - 1, meaning="a seed")
CLASSES = Number(int, 2, meaning="a number of classes (background included)")
PIXELS = Number(int, 1, 10_000, meaning="a size in pixels")  # drawing
IMAGE_SIDE = Number(int, 1, 65_535, meaning="an image side in pixels")
DEPTH = Number(int, 0, 100, meaning="a depth")
OPSET = Number(int, 7, 30, meaning="an ONNX opset")
SCORE = Number(float, 0, 1, meaning="a score threshold")
IOU = Number(float, 0, 1, meaning="an IoU threshold")
LEARNING_RATE = Number(float, 0, low_open=True, meaning="a learning rate")
MOMENTUM = Number(float, 0, 1, high_open=True, meaning="a momentum")
WEIGHT_DECAY = Number(float, 0, meaning="a weight decay")
SECONDS = Number(float, 0, meaning="a duration in seconds")  # LoadGen's own ceiling: ssd.loadgen_conf.check_seconds
EPOCH = Number(int, 0, meaning="an epoch")
BAND_EDGE = Number(float, 0, meaning="a band edge")  # the evaluation report's size (pixels) and distance (metres) bands
