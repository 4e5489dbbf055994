"""What several test modules (and the benchmarks) share: the tiny config, the tiny model's files,
checkpoints laid out as training writes them, synthetic images, the seed scripts run in-process.
The fixtures that build them once per run are in ``conftest.py``."""
from __future__ import annotations

import runpy
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssd import load_config
from ssd.data.labels import cognata_fixed
from ssd.data.synth import COGNATA_CLASSES, draw_frame, synth_cognata
from ssd.models import build_model

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 15  # the fixed Cognata map the synthetic data uses
TINY_YAML = """
model:
  image_size: [64, 128]
  steps: [8, 16]
  scales: [16, 32, 64]
  aspect_ratios: [[2], []]
  middle_blocks:
    - {kernel_size: [1, 3], padding: [0, 1], stride: [1, 2]}
  head:
    num_defaults: [3, 2]
    loc: [{kernel_size: 3, padding: 1}, {kernel_size: 3, padding: 1}]
    conf: [{kernel_size: 3, padding: 1}, {kernel_size: 3, padding: 1}]
"""


@dataclass(frozen=True)
class TinyFiles:
    config: Path
    checkpoint: Path
    data: Path
    folder: Path


def save_checkpoint(path: Path, model: torch.nn.Module, config_path: Path, epoch: int = 0) -> Path:
    """A checkpoint laid out as ``ssd.engine.fit`` writes them (without optimiser state)."""
    labels = cognata_fixed()
    torch.save({
        "epoch": epoch, "model_state_dict": model.state_dict(),
        "config": {"name": config_path.stem, "source": str(config_path), "text": config_path.read_text()},
        "arch": "ssd", "num_classes": labels.num_classes, "class_names": list(labels.class_names), "label_map": labels.to_dict(),
    }, path)
    return path


def write_image(path: Path, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A synthetic RGB image of ``size`` (H, W) saved losslessly; returns its pixels."""
    image, _ = draw_frame(np.random.default_rng(seed), *size, COGNATA_CLASSES, (1, 3))
    Image.fromarray(image).save(path)
    return image


def assert_same_detections(a: dict, b: dict, atol: float = 1e-2) -> None:
    """Equal up to float noise, which may swap detections of near-equal score."""
    torch.testing.assert_close(a["scores"], b["scores"], rtol=1e-4, atol=1e-5)
    distance = (a["boxes"][:, None, :] - b["boxes"][None, :, :]).abs().amax(dim=2)  # [K, K]
    distance[a["labels"][:, None] != b["labels"][None, :]] = float("inf")
    assert distance.amin(dim=1).max() < atol and distance.amin(dim=0).max() < atol


def build_tiny_files(folder: Path) -> TinyFiles:
    """A tiny config, a checkpoint of a random model with damped heads (saved as training saves them)
    and a small synthetic Cognata dataset, under ``folder``."""
    config_path = folder / "tiny.yaml"
    config_path.write_text(TINY_YAML)
    torch.manual_seed(0)
    model = build_model(load_config(config_path), NUM_CLASSES)
    with torch.no_grad():  # random heads saturate the softmax (tied scores) and the box offsets
        for scale, head in ((0.05, model.loc), (0.15, model.conf)):
            for parameter in head.parameters():
                parameter.mul_(scale)
    checkpoint = save_checkpoint(folder / "tiny.pth", model, config_path)
    data = synth_cognata(folder / "cognata", 20, size=(72, 120), seed=1).root
    return TinyFiles(config_path, checkpoint, data, folder)


def model_flags(files: TinyFiles) -> list[str]:
    return ["--config", str(files.config), "--pretrained-model", str(files.checkpoint), "--device", "cpu"]


def run_script(name: str, argv: list[str]) -> int:
    """Run a root script of the repository in this process, as ``python NAME ARGV``."""
    old = sys.argv
    sys.argv = [name, *argv]
    try:
        runpy.run_path(str(ROOT / name), run_name="__main__")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = old
    return 0
