"""Pure tensor geometry: box format conversions and SSD offset coding. No state, no I/O."""
from __future__ import annotations

import torch
from torch import Tensor

DEFAULT_VARIANCES = (0.1, 0.2)


def cxcywh_to_xyxy(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (cx, cy, w, h) -> (x1, y1, x2, y2)."""
    centre, size = boxes[..., :2], boxes[..., 2:]
    return torch.cat((centre - 0.5 * size, centre + 0.5 * size), dim=-1)


def xyxy_to_cxcywh(boxes: Tensor) -> Tensor:
    """``[..., 4]`` (x1, y1, x2, y2) -> (cx, cy, w, h)."""
    low, high = boxes[..., :2], boxes[..., 2:]
    return torch.cat(((low + high) / 2, high - low), dim=-1)


def encode_offsets(boxes_cxcywh: Tensor, anchors_cxcywh: Tensor, variances: tuple[float, float] = DEFAULT_VARIANCES) -> Tensor:
    """SSD regression targets ``[..., 4]`` of boxes relative to anchors (both cx, cy, w, h).

    (dx, dy) = (box centre - anchor centre) / anchor size / variance[0];
    (dw, dh) = log(box size / anchor size) / variance[1].
    """
    centre = (boxes_cxcywh[..., :2] - anchors_cxcywh[..., :2]) / anchors_cxcywh[..., 2:] / variances[0]
    size = torch.log(boxes_cxcywh[..., 2:] / anchors_cxcywh[..., 2:]) / variances[1]
    return torch.cat((centre, size), dim=-1)


def decode_offsets(offsets: Tensor, anchors_cxcywh: Tensor, variances: tuple[float, float] = DEFAULT_VARIANCES) -> Tensor:
    """Inverse of :func:`encode_offsets`: ``[..., 4]`` offsets -> boxes (x1, y1, x2, y2), normalised."""
    centre = offsets[..., :2] * variances[0] * anchors_cxcywh[..., 2:] + anchors_cxcywh[..., :2]
    size = torch.exp(offsets[..., 2:] * variances[1]) * anchors_cxcywh[..., 2:]
    return torch.cat((centre - 0.5 * size, centre + 0.5 * size), dim=-1)

