import math

import pytest
import torch

from ssd.anchors import default_boxes
from ssd.config import load_config
from reference_impl import reference_default_boxes


def test_two_map_toy_config_by_hand(tiny_config):
    anchors = default_boxes(tiny_config)
    # map 0: 8x16 grid, 3 sizes; map 1: 4x8 grid, 2 sizes
    assert anchors.shape == (3 * 8 * 16 + 2 * 4 * 8, 4)
    expected = {
        0: (0.5 * 8 / 128, 0.5 * 8 / 64, 16 / 128, 16 / 64),
        1: (1.5 * 8 / 128, 0.5 * 8 / 64, 16 / 128, 16 / 64),  # next column
        16: (0.5 * 8 / 128, 1.5 * 8 / 64, 16 / 128, 16 / 64),  # next row
        128: (0.5 * 8 / 128, 0.5 * 8 / 64, math.sqrt(16 * 32) / 128, math.sqrt(16 * 32) / 64),
        256: (0.5 * 8 / 128, 0.5 * 8 / 64, 16 * math.sqrt(2) / 128, 16 / math.sqrt(2) / 64),
        384: (0.5 * 16 / 128, 0.5 * 16 / 64, 32 / 128, 32 / 64),
        447: (7.5 * 16 / 128, 3.5 * 16 / 64, math.sqrt(32 * 64) / 128, math.sqrt(32 * 64) / 64),
    }
    for index, values in expected.items():
        assert anchors[index].tolist() == pytest.approx(values, abs=1e-7), index


def test_values_are_clamped(tmp_path, tiny_config_path):
    path = tmp_path / "big.yaml"
    path.write_text(tiny_config_path.read_text().replace("scales: [16, 32, 64]", "scales: [160, 320, 640]"))
    anchors = default_boxes(load_config(path))
    assert anchors.max() == 1.0 and anchors.min() >= 0.0


@pytest.mark.parametrize(
    "name",
    ["coco_300x300", "ssdlite_coco_300x300", "baseline_4MP_ss_all", "test_8MP", "baseline_8MP_ss_scales_all",
     "baseline_8MP_ss_scales_fm1_5x5_all"],
)
def test_equal_to_reference_construction(name):
    model = load_config(name).model
    expected = reference_default_boxes(model.image_size, model.feature_sizes, model.steps, model.scales, model.aspect_ratios)
    anchors = default_boxes(model)
    assert anchors.dtype == torch.float32 and anchors.shape == expected.shape
    assert torch.allclose(anchors, expected, atol=1e-6, rtol=0)
