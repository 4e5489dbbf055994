"""Model summary for a config without allocating activations: everything runs on the meta device."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torchinfo

from ssd.config import Config
from ssd.models import build_model


@dataclass
class ModelSummary:
    """torchinfo's layer table plus the figures SSD users read off it."""

    table: str
    feature_sizes: tuple[tuple[int, int], ...]
    num_anchors: int
    num_parameters: int
    mult_adds: int
    output_shape: tuple[int, ...]

    def __str__(self) -> str:
        sizes = ", ".join(f"({h}, {w})" for h, w in self.feature_sizes)
        return (
            f"{self.table}\n"
            f"Feature sizes: {sizes}\n"
            f"Default boxes: {self.num_anchors:,}\n"
            f"Parameters: {self.num_parameters:,}\n"
            f"Mult-adds: {self.mult_adds / 1e12:.2f} T\n"
            f"Output (locs): {list(self.output_shape)}"
        )


def summarize(config: Config, num_classes: int = 10, batch_size: int = 4, depth: int = 3) -> ModelSummary:
    """Summarise the model of ``config`` for an input batch of the config's image size.

    The model is built and run on the meta device, so an 8 MP batch costs no memory or time; the
    table (shapes, parameters, mult-adds) is the one a real forward would give.
    """
    with torch.device("meta"):
        model = build_model(config, num_classes)
    height, width = config.model.image_size
    stats = torchinfo.summary(
        model,
        input_size=(batch_size, 3, height, width),
        device=torch.device("meta"),
        depth=depth,
        col_names=("output_size", "num_params"),
        verbose=0,
    )
    num_anchors = config.model.num_anchors
    return ModelSummary(
        table=str(stats),
        feature_sizes=config.model.feature_sizes,
        num_anchors=num_anchors,
        num_parameters=stats.total_params,
        mult_adds=stats.total_mult_adds,
        output_shape=(batch_size, 4, num_anchors),
    )
