"""The architecture table: a third architecture is a config reader, a network and one registration,
and then trains, evaluates and exports through the normal commands."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from ssd.architectures import Architecture, UnknownArchitectureError, architecture_names, get_architecture, register_architecture
from ssd.cli.main import main
from ssd.config import ArchitectureFields, ConfigError, load_config
from ssd.data.synth import synth_cognata
from ssd.geometry import ConvSpec, conv_output_size, head_sizes
from ssd.models import build_model
from ssd.models.heads import flatten_predictions, xavier_init

HALVING = ConvSpec((3, 3), (2, 2), (1, 1))
TINY_ARCH_YAML = """
model:
  arch: tiny
  image_size: [64, 128]
  steps: [8, 16]
  scales: [16, 32, 64]
  aspect_ratios: [[2], []]
"""


# -- the whole of a third architecture ---------------------------------------------------------------
def read_tiny_config(reader, raw, shared) -> ArchitectureFields:
    """Three halvings to the first map, one more to the second; the default 3x3 heads."""
    sizes = [shared.image_size]
    for _ in range(4):
        sizes.append(conv_output_size(sizes[-1], HALVING))
    head = reader.head(raw, shared.boxes_per_location)
    return ArchitectureFields(head=head, feature_sizes=head_sizes(tuple(sizes[3:]), head.loc, head.conf))


class TinySSD(nn.Module):
    def __init__(self, model_config, num_classes: int, backbone_weights=None):
        super().__init__()
        self.num_classes = num_classes
        block = lambda c_in, c_out: nn.Sequential(nn.Conv2d(c_in, c_out, 3, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())  # noqa: E731
        self.features = nn.ModuleList([nn.Sequential(block(3, 8), block(8, 16), block(16, 16)), block(16, 16)])
        head = model_config.head
        self.loc = nn.ModuleList(nn.Conv2d(16, n * 4, 3, padding=1) for n in head.num_defaults)
        self.conf = nn.ModuleList(nn.Conv2d(16, n * num_classes, 3, padding=1) for n in head.num_defaults)
        xavier_init(self.loc, self.conf)

    def forward(self, x):
        maps = []
        for stage in self.features:
            x = stage(x)
            maps.append(x)
        return flatten_predictions(maps, self.loc, self.conf, self.num_classes)


@pytest.fixture
def tiny_arch():
    register_architecture(Architecture("tiny", read_config=read_tiny_config, build=TinySSD))
    yield
    from ssd import architectures

    architectures._registered.pop("tiny")


# -- tests ------------------------------------------------------------------------------------------
def test_registered_architecture_is_a_config_arch_and_a_model_choice(tiny_arch, tmp_path: Path):
    path = tmp_path / "tiny_arch.yaml"
    path.write_text(TINY_ARCH_YAML)
    config = load_config(path)
    assert "tiny" in architecture_names() and config.model.feature_sizes == ((8, 16), (4, 8))
    locs, confs = build_model(config, 3)(torch.zeros(2, 3, 64, 128))
    assert locs.shape == (2, 4, config.model.num_anchors) and confs.shape == (2, 3, config.model.num_anchors)


def test_unknown_architecture_is_an_error_naming_the_choices(tmp_path: Path):
    path = tmp_path / "unknown.yaml"
    path.write_text(TINY_ARCH_YAML.replace("arch: tiny", "arch: vgg"))
    with pytest.raises(ConfigError, match=r"model\.arch: expected one of \('ssd', 'ssdlite'"):
        load_config(path)
    with pytest.raises(UnknownArchitectureError, match="unknown architecture 'vgg'"):
        get_architecture("vgg")


def test_a_third_architecture_trains_evaluates_and_exports_through_the_commands(tiny_arch, tmp_path: Path, capsys):
    config = tmp_path / "tiny_arch.yaml"
    config.write_text(TINY_ARCH_YAML)
    data = tmp_path / "cognata"
    synth_cognata(data, 12, size=(64, 128), seed=4, objects=(1, 3))
    common = ["--config", str(config), "--dataset", "cognata", "--data-path", str(data), "--batch-size", "2",
              "--num-workers", "0", "--device", "cpu"]
    run = tmp_path / "run"
    assert main(["train", *common, "--model", "tiny", "--epochs", "1", "--save-folder", str(run), "--no-progress"]) == 0
    assert capsys.readouterr().out.startswith("mAP@[.5:.95] = ")
    assert main(["evaluate", *common, "--pretrained-model", str(run / "last.pth"), "--output-dir", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["config"] == "tiny_arch" and len(metrics["stats"]) == 12 and metrics["images"] > 0
    onnx = tmp_path / "tiny.onnx"
    assert main(["export", "--config", str(config), "--pretrained-model", str(run / "last.pth"), "--output", str(onnx)]) == 0
    difference = float(capsys.readouterr().out.split("max absolute difference ")[1])
    assert onnx.is_file() and difference < 1e-4
