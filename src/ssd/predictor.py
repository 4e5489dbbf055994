"""The one forward pass + decoding that evaluation, training's per-epoch evaluation and :class:`Detector`
share, assembled in one place (:func:`build_predictor`).

``network(images [N, 3, H, W]) -> (locs [N, 4, A], confs [N, C, A])`` is an ``nn.Module`` in eval
mode or an ONNX Runtime session (:class:`ssd.onnx_export.OnnxNetwork`); the predictor moves a
preprocessed batch to its device (channels-last if the module was converted), runs the network
under the given autocast and decodes with :class:`ssd.decoding.DecodeSettings`, boxes in pixels
of the original images.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from ssd.amp import Autocast, MixedPrecision
from ssd.anchors import default_boxes
from ssd.config import Config
from ssd.decoding import DecodeSettings
from ssd.device import images_to_device

Network = Callable[[Tensor], tuple[Tensor, Tensor]]


@dataclass
class Predictor:
    """Forward and decode preprocessed batches; ``anchors [A, 4]`` (cx, cy, w, h) are moved to ``device``."""

    network: Network
    anchors: Tensor
    settings: DecodeSettings
    device: torch.device
    channels_last: bool = False
    autocast: Autocast = field(default=contextlib.nullcontext)

    def __post_init__(self) -> None:
        self.anchors = self.anchors.to(self.device)

    @torch.inference_mode()
    def __call__(self, images: Tensor, image_sizes: Sequence[tuple[int, int]]) -> list[dict[str, Tensor]]:
        """``images [N, 3, H, W]`` (normalised) -> per image ``boxes [K, 4]`` (pixels of ``image_sizes``), ``scores``, ``labels``."""
        images = images_to_device(images, self.device, self.channels_last)
        with self.autocast():
            locs, confs = self.network(images)
        return self.settings.decode(locs, confs, self.anchors, image_sizes)


def build_predictor(
    network: Network, config: Config, settings: DecodeSettings, device: torch.device | str, *,
    precision: str = "fp32", channels_last: bool = False,
) -> Predictor:
    """The predictor of ``network`` built for ``config`` (its default boxes), decoding with ``settings``,
    its batches on ``device`` (channels-last if asked) under ``precision``'s autocast
    (:data:`ssd.choices.PRECISION_NAMES`; an exported network is compiled for its own and takes fp32 here)."""
    device = torch.device(device)
    return Predictor(
        network, default_boxes(config), settings, device, channels_last=channels_last,
        autocast=MixedPrecision(device, precision).autocast,
    )
