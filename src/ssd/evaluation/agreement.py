"""How closely one engine's detections reproduce another's (an exported, quantized or
reduced-precision model against PyTorch fp32)."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


def reproduced_fraction(reference: Sequence[Mapping[str, Any]], other: Sequence[Mapping[str, Any]], tolerance: float = 1.0) -> float:
    """Of ``reference``'s detections (per image: ``boxes [K, 4]``, ``labels [K]``), the fraction that
    ``other`` has too: a detection of the same label in the same image with every box side within
    ``tolerance`` pixels. 1.0 when the reference has none."""
    if len(reference) != len(other):
        raise ValueError(f"{len(reference)} reference images, {len(other)} to compare")
    total = found = 0
    for expected, actual in zip(reference, other):
        boxes, labels = torch.as_tensor(expected["boxes"]).reshape(-1, 4), torch.as_tensor(expected["labels"]).reshape(-1)
        other_boxes, other_labels = torch.as_tensor(actual["boxes"]).reshape(-1, 4), torch.as_tensor(actual["labels"]).reshape(-1)
        total += len(labels)
        if len(labels) and len(other_labels):
            close = (boxes[:, None, :] - other_boxes[None, :, :]).abs().amax(dim=2) <= tolerance
            found += int((close & (labels[:, None] == other_labels[None, :])).any(dim=1).sum())
    return found / total if total else 1.0
