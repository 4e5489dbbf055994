"""Augmentation keeps boxes on their objects; the fused colour map agrees with torchvision's ops."""
from __future__ import annotations

import colorsys
import math

import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from ssd.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ColorNormalize,
    SSDRandomCrop,
    eval_transform,
    flip_transform,
    train_transform,
)

MAGENTA = (255, 0, 255)


def scene(height: int = 90, width: int = 120, box=(70, 20, 100, 50)) -> tuple[tv_tensors.Image, dict]:
    """Grey image with one magenta rectangle and its box (pixels, xyxy)."""
    image = torch.full((3, height, width), 110, dtype=torch.uint8)
    x1, y1, x2, y2 = box
    image[:, y1:y2, x1:x2] = torch.tensor(MAGENTA, dtype=torch.uint8)[:, None, None]
    boxes = tv_tensors.BoundingBoxes(torch.tensor([box], dtype=torch.float32), format="XYXY", canvas_size=(height, width))
    return tv_tensors.Image(image), {"boxes": boxes, "labels": torch.tensor([1])}


def colourful(normalised: torch.Tensor) -> torch.Tensor:
    """``[H, W]`` mask of strongly coloured pixels (grey stays grey under any jitter)."""
    rgb = normalised * torch.tensor(IMAGENET_STD)[:, None, None] + torch.tensor(IMAGENET_MEAN)[:, None, None]
    return (rgb.amax(0) - rgb.amin(0)) > 0.25


@pytest.mark.parametrize("make,crops", [(train_transform, True), (flip_transform, False)])
def test_training_transforms_keep_the_box_on_its_object(make, crops):
    transform = make((64, 80))
    checked = cropped = flipped = 0
    for seed in range(40):
        torch.manual_seed(seed)
        image, target = scene()
        out, out_target = transform(image, target)
        assert out.shape == (3, 64, 80) and out.dtype == torch.float32
        mask = colourful(out)
        if len(out_target["boxes"]) == 0:  # cropped away: the object's centre left the crop
            continue
        x1, y1, x2, y2 = out_target["boxes"][0].round().int().tolist()
        inside = mask[y1:y2, x1:x2]
        assert inside.float().mean() > 0.9, f"seed {seed}: box {[x1, y1, x2, y2]} misses the object"
        outside = mask.clone()
        outside[max(0, y1 - 1) : y2 + 1, max(0, x1 - 1) : x2 + 1] = False
        assert not outside.any(), f"seed {seed}: object pixels outside the box"
        checked += 1
        cropped += (x2 - x1) > 22  # the object grew: a crop was upsampled
        flipped += x1 < 40  # the object started on the right
    assert checked >= 30 and (cropped > 0) == crops and flipped > 0


def test_crop_keeps_boxes_whose_centres_are_inside():
    crop = SSDRandomCrop()
    image = tv_tensors.Image(torch.zeros(3, 100, 100, dtype=torch.uint8))
    boxes = tv_tensors.BoundingBoxes(torch.tensor([[10.0, 10, 30, 30], [60, 60, 90, 90]]), format="XYXY", canvas_size=(100, 100))
    for seed in range(30):
        torch.manual_seed(seed)
        params = crop.make_params([image, boxes])
        if not params:
            continue
        left, top, right, bottom = params["left"], params["top"], params["left"] + params["width"], params["top"] + params["height"]
        assert 0.3 * 100 - 1 <= params["width"] <= 100 and 0.3 * 100 - 1 <= params["height"] <= 100
        centres = torch.tensor([[20.0, 20], [75, 75]])
        inside = (centres[:, 0] > left) & (centres[:, 0] < right) & (centres[:, 1] > top) & (centres[:, 1] < bottom)
        assert params["keep"].tolist() == inside.tolist() and inside.any()
        out = crop.transform(boxes, params)
        assert (out[~params["keep"]] == 0).all()


def test_crop_leaves_images_without_boxes_whole():
    image = tv_tensors.Image(torch.zeros(3, 50, 60, dtype=torch.uint8))
    empty = tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(50, 60))
    assert SSDRandomCrop().make_params([image, empty]) == {}


def test_eval_transform_is_resize_and_normalise():
    image, target = scene()
    out, out_target = eval_transform((45, 60))(image, target)
    want = F.normalize(F.to_dtype(F.resize(image, [45, 60], antialias=True), torch.float32, scale=True), IMAGENET_MEAN, IMAGENET_STD)
    torch.testing.assert_close(out.as_subclass(torch.Tensor), want.as_subclass(torch.Tensor), atol=1e-5, rtol=0)
    torch.testing.assert_close(out_target["boxes"].as_subclass(torch.Tensor), torch.tensor([[35.0, 10, 50, 25]]))


@pytest.mark.parametrize(
    "name,factor,reference,tolerance",
    [
        ("brightness", 1.1, F.adjust_brightness, 1e-5),
        ("contrast", 0.6, F.adjust_contrast, 1e-3),
        ("saturation", 1.4, F.adjust_saturation, 1e-5),
    ],
)
def test_colour_jitter_steps_match_torchvision(name, factor, reference, tolerance):
    torch.manual_seed(0)
    image = torch.rand(3, 40, 50) * 0.6 + 0.2  # away from 0 and 1: one clamp or several agree
    ours = ColorNormalize(mean=(0, 0, 0), std=(1, 1, 1)).transform(
        tv_tensors.Image(image), {"factors": {name: factor}, "order": [name]}
    )
    torch.testing.assert_close(ours.as_subclass(torch.Tensor), reference(image, factor), atol=tolerance, rtol=0)


def hsv_hue(rgb: torch.Tensor) -> torch.Tensor:
    return torch.tensor([colorsys.rgb_to_hsv(*pixel)[0] for pixel in rgb.reshape(3, -1).T.tolist()])


@pytest.mark.parametrize("factor", [0.05, -0.03])
def test_hue_step_shifts_hsv_hue_by_the_factor(factor):
    torch.manual_seed(0)
    image = torch.rand(3, 16, 16) * 0.6 + 0.2
    jitter = ColorNormalize(mean=(0, 0, 0), std=(1, 1, 1))
    ours = jitter.transform(tv_tensors.Image(image), {"factors": {"hue": factor}, "order": ["hue"]}).as_subclass(torch.Tensor)
    shift = (hsv_hue(ours) - hsv_hue(image) + 0.5) % 1 - 0.5
    assert abs(shift.mean() - factor) < 1e-3 and shift.std() < 0.01
    third = jitter.transform(tv_tensors.Image(torch.tensor([1.0, 0.0, 0.0, 0.5, 0.5, 0.5]).view(2, 3).T.reshape(3, 1, 2)),
                             {"factors": {"hue": 1 / 3}, "order": ["hue"]})
    torch.testing.assert_close(third.as_subclass(torch.Tensor).reshape(3, 2).T, torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.5]]), atol=1e-5, rtol=0)


def test_colour_jitter_composes_in_the_drawn_order():
    torch.manual_seed(1)
    image = torch.rand(3, 30, 30) * 0.5 + 0.25
    factors = {"brightness": 1.05, "contrast": 0.8, "saturation": 1.2}
    order = ["saturation", "contrast", "brightness"]
    ours = ColorNormalize(mean=(0, 0, 0), std=(1, 1, 1)).transform(tv_tensors.Image(image), {"factors": factors, "order": order})
    want = F.adjust_brightness(F.adjust_contrast(F.adjust_saturation(image, 1.2), 0.8), 1.05)
    torch.testing.assert_close(ours.as_subclass(torch.Tensor), want, atol=1e-3, rtol=0)


def test_colour_jitter_ranges():
    jitter = ColorNormalize(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05)
    for seed in range(20):
        torch.manual_seed(seed)
        params = jitter.make_params([])
        assert sorted(params["order"]) == ["brightness", "contrast", "hue", "saturation"]
        assert abs(params["factors"]["brightness"] - 1) <= 0.125 and abs(params["factors"]["hue"]) <= 0.05
        assert 0.5 <= params["factors"]["contrast"] <= 1.5 and not math.isnan(params["factors"]["saturation"])
