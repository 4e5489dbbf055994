"""Drawing detections on images: a fixed colour per class and "name score" labels."""
from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import torch
from torchvision.utils import draw_bounding_boxes

from ssd.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def class_colour(label: int) -> tuple[int, int, int]:
    """A stable, well-spread RGB colour for a class index (golden-ratio hue steps)."""
    hue = (label * 0.618033988749895) % 1.0
    sector, fraction = int(hue * 6), (hue * 6) % 1.0
    high, low, rising, falling = 230, 40, int(40 + 190 * fraction), int(230 - 190 * fraction)
    return [
        (high, rising, low), (falling, high, low), (low, high, rising),
        (low, falling, high), (rising, low, high), (high, low, falling),
    ][sector]


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """A normalised ``[3, H, W]`` float image back to uint8."""
    mean = torch.tensor(IMAGENET_MEAN, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=image.device).view(3, 1, 1)
    return ((image.float() * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)


@lru_cache(maxsize=1)
def label_font() -> str | None:
    """A TrueType font file (matplotlib ships DejaVu Sans): torchvision honours a font size only with one."""
    try:
        from matplotlib import font_manager

        return font_manager.findfont("DejaVu Sans", fallback_to_default=True)
    except (ImportError, ValueError):
        return None


def draw_detections(
    image: torch.Tensor,
    boxes: torch.Tensor,
    labels: torch.Tensor,
    scores: torch.Tensor | None,
    class_names: Sequence[str],
    *,
    thickness: int = 2,
    font_size: int | None = None,
    colour: tuple[int, int, int] | None = None,
) -> torch.Tensor:
    """``image [3, H, W]`` uint8 with ``boxes [K, 4]`` (xyxy pixels) drawn and labelled, in their
    class's colour or in ``colour``.

    Boxes are cut to the image plus the line width first: the sides beyond it stay unseen, and Pillow
    walks a side's whole length: an untrained model's box can be hundreds of millions of pixels tall.
    """
    if boxes.numel() == 0:
        return image
    height, width = image.shape[-2:]
    margin = thickness  # the fewest pixels beyond the image that keep a side drawn inward from there unseen (tests pin it)
    boxes = torch.minimum(boxes.detach().float().cpu().clamp(min=-margin), torch.tensor([width, height, width, height]) + margin)
    names = [class_names[int(l)] if int(l) < len(class_names) else str(int(l)) for l in labels]
    captions = names if scores is None else [f"{n} {float(s):.2f}" for n, s in zip(names, scores)]
    colours = [colour or class_colour(int(l)) for l in labels]
    font = label_font()
    return draw_bounding_boxes(
        image.cpu(), boxes, labels=captions, colors=colours, width=thickness,
        font=font, font_size=(font_size or 10) if font else None,
    )
