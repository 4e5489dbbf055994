"""Shared fixtures: a tiny two-map config small enough for fast model tests."""
from __future__ import annotations

from pathlib import Path

import pytest

from ssd.config import Config, load_config

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


@pytest.fixture
def tiny_config_path(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY_YAML)
    return path


@pytest.fixture
def tiny_config(tiny_config_path: Path) -> Config:
    return load_config(tiny_config_path)
