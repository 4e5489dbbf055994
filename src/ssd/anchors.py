"""Default boxes (anchors), built as the reference builds them but vectorised."""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ssd.config import Config, ModelConfig


def default_boxes(config: Config | ModelConfig) -> Tensor:
    """Default boxes of a config as ``[A, 4]`` float32 (cx, cy, w, h), normalised to [0, 1].

    Map k with scale s_k and next scale s_{k+1} gets boxes (s_k, s_k), (sqrt(s_k s_{k+1}), same)
    and (s_k sqrt(a), s_k / sqrt(a)) per aspect ratio a, in pixels, normalised by the image width and
    height separately. Centres are ((j + 0.5) step / W, (i + 0.5) step / H) for row i, column j.
    Order: map, box size, row, column -- the order of the model's flattened head outputs. All four
    numbers are clamped to [0, 1], as in the reference.
    """
    model = config.model if isinstance(config, Config) else config
    height, width = model.image_size
    per_map = []
    for k, (rows, cols) in enumerate(model.feature_sizes):
        small, large = model.scales[k], model.scales[k + 1]
        sizes = [(small, small), (math.sqrt(small * large),) * 2]
        sizes += [(small * math.sqrt(a), small / math.sqrt(a)) for a in model.aspect_ratios[k]]
        wh = torch.tensor(sizes, dtype=torch.float32) / torch.tensor([width, height], dtype=torch.float32)
        step = model.steps[k]
        cx = (torch.arange(cols, dtype=torch.float32) + 0.5) * step / width
        cy = (torch.arange(rows, dtype=torch.float32) + 0.5) * step / height
        boxes = torch.empty(len(sizes), rows, cols, 4, dtype=torch.float32)
        boxes[..., 0] = cx.view(1, 1, cols)
        boxes[..., 1] = cy.view(1, rows, 1)
        boxes[..., 2] = wh[:, 0].view(-1, 1, 1)
        boxes[..., 3] = wh[:, 1].view(-1, 1, 1)
        per_map.append(boxes.reshape(-1, 4))
    return torch.cat(per_map).clamp_(0.0, 1.0)
