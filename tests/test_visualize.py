"""Drawing detections: a box reaching far beyond the image draws as its visible part."""
from __future__ import annotations

import pytest
import torch
from torchvision.utils import draw_bounding_boxes

from ssd.visualize import class_colour, draw_detections, label_font

IMAGE = torch.zeros(3, 40, 60, dtype=torch.uint8)
LABELS, NAMES = torch.tensor([1]), ["background", "car"]


@pytest.mark.parametrize("thickness", [1, 3])
def test_a_box_far_beyond_the_image_draws_as_torchvision_draws_its_visible_part(thickness: int):
    far = draw_detections(IMAGE, torch.tensor([[10.0, 5.0, 3e8, 2e9]]), LABELS, None, NAMES, thickness=thickness)
    just_beyond = [[10.0, 5.0, 60 + thickness + 5, 40 + thickness + 5]]  # its right and bottom sides off the image
    expected = draw_bounding_boxes(IMAGE, torch.tensor(just_beyond), labels=["car"], colors=[class_colour(1)], width=thickness,
                                   font=label_font(), font_size=10 if label_font() else None)
    assert torch.equal(far, expected) and far[:, 5, 30].any()


@pytest.mark.parametrize("thickness", [1, 3])
def test_sides_beyond_the_top_left_are_not_drawn_along_the_edge(thickness: int):
    drawn = draw_detections(IMAGE, torch.tensor([[-5e8, -1e9, 30.0, 20.0]]), LABELS, None, NAMES, thickness=thickness)
    assert drawn[:, 13:18, 30 - thickness + 1].all(dim=0).all()  # the right side, inside
    assert not drawn[:, 13:18, 0].any() and not drawn[:, 0, 18:26].any()  # no left or top side (between the label and the bottom side)
