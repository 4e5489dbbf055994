"""``ssd predict`` on a folder: images/s with decoding and resizing overlapped (loader workers, a
writer thread) against the same command run serially (``--num-workers 0``).

A folder of generated 1920x1080 JPEGs (200 by default) is predicted with a randomly initialised
model of each config (``demo_ssdlite_160``, ``coco_300x300``); both sides write the drawn images and
the detections. The two sides alternate, twice each, and the faster run of each side counts.

Run: .venv/bin/python benchmarks/bench_predict.py [--images 200] [--workers 2]
"""
from __future__ import annotations

from common import report  # first: it turns huge pages on before torch loads

import argparse
import contextlib
import io
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from support import save_checkpoint

from ssd.cli.main import main as ssd
from ssd.config import load_config, resolve_config_path
from ssd.data.labels import cognata_fixed
from ssd.data.synth import COGNATA_CLASSES, draw_frame
from ssd.models import build_model

CONFIGS = ("demo_ssdlite_160", "coco_300x300")


def write_images(folder: Path, count: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for k in range(count):
        Image.fromarray(draw_frame(rng, 1080, 1920, COGNATA_CLASSES, (2, 8))[0]).save(folder / f"{k:04d}.jpg", quality=90)


def images_per_second(checkpoint: Path, config: str, images: Path, output: Path, workers: int, count: int) -> float:
    argv = ["predict", "--config", config, "--pretrained-model", str(checkpoint), "--device", "cpu", "--input", str(images),
            "--output", str(output), "--num-workers", str(workers), "--batch-size", "8"]
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        assert ssd(argv) == 0
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_images(root / "images", args.images)
        for config in CONFIGS:
            torch.manual_seed(0)
            checkpoint = save_checkpoint(root / f"{config}.pth", build_model(load_config(config), cognata_fixed().num_classes), resolve_config_path(config))
            rates: dict[int, float] = {0: 0.0, args.workers: 0.0}
            for _ in range(2):
                for workers in rates:
                    rate = images_per_second(checkpoint, config, root / "images", root / f"out_{config}_{workers}", workers, args.images)
                    rates[workers] = max(rates[workers], rate)
            report(f"predict {args.images} 1080p JPEGs, {config}", rates[args.workers], rates[0],
                   "the same command, --num-workers 0 (serial decoding)", unit="img/s")


if __name__ == "__main__":
    main()
