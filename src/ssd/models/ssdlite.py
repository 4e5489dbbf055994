"""SSDLite-MobileNetV2 at 300x300, working (the reference's version does not run).

The reference taps block 14's expansion output with a forward hook writing a module-level dict
(wrong with several models or threads) and pairs its 3,000-box model with 2,000 default boxes. Here
the tap is explicit in ``forward`` and the config spells out both orientations of each aspect ratio,
so the heads' 6 boxes per location match the 3,000 default boxes. Parameter names follow the
reference (``feature_extractor.feature_extractor.*``, ``additional_blocks``, ``loc``, ``conf``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torchvision.models import MobileNet_V2_Weights, mobilenet_v2
from torchvision.models.mobilenetv2 import InvertedResidual

from ssd import geometry
from ssd.architectures import Architecture
from ssd.config import ArchitectureFields, FieldReader, HeadSpec, ModelConfig, SharedModelFields
from ssd.geometry import ConvSpec
from ssd.models.backbone_weights import load_backbone_weights
from ssd.models.checkpointing import run_block, run_blocks
from ssd.models.heads import flatten_predictions, xavier_init

TAP_BLOCK = 14  # its expansion output (576 channels, stride 16) is the first prediction map
HEAD_CHANNELS = (576, 1280, 512, 256, 256, 64)


def read_ssdlite_config(reader: FieldReader, raw: dict[str, Any], shared: SharedModelFields) -> ArchitectureFields:
    """SSDLite's layers are fixed: six maps, the same number of default boxes on each."""
    num_maps, boxes_per_location = len(shared.steps), shared.boxes_per_location
    if num_maps != geometry.SSDLITE_NUM_MAPS:
        raise reader.error("model.steps", f"SSDLite has {geometry.SSDLITE_NUM_MAPS} maps, got {num_maps}")
    if len(set(boxes_per_location)) != 1:
        raise reader.error("model.aspect_ratios", "SSDLite heads need the same number of ratios on every map")
    ones = (ConvSpec((3, 3), (1, 1), (1, 1)),) * num_maps
    head = HeadSpec(num_defaults=boxes_per_location, loc=ones, conf=ones)
    try:
        feature_sizes = geometry.ssdlite_sizes(shared.image_size)
    except geometry.GeometryError as exc:
        raise reader.error("model.image_size", str(exc)) from exc
    return ArchitectureFields(head=head, feature_sizes=feature_sizes)


class MobileNetV2(nn.Module):
    """MobileNetV2 features returning (block 14 expansion output, final 1280-channel map)."""

    def __init__(self, weights: str | Path | None = None):
        super().__init__()
        network = mobilenet_v2(weights=None)
        if weights is not None:
            load_backbone_weights(network, weights, Path(MobileNet_V2_Weights.IMAGENET1K_V1.url).name)
        self.feature_extractor = network.features

    def forward(self, x: Tensor, checkpointed: bool = False) -> tuple[Tensor, Tensor]:
        """``checkpointed``: each block recomputed in the backward pass (the tapped block in its two parts)."""
        x = run_blocks(self.feature_extractor[:TAP_BLOCK], x, checkpointed)
        tap_block = self.feature_extractor[TAP_BLOCK]
        tapped = run_blocks(tap_block.conv[:1], x, checkpointed)  # stride-2 block: no residual connection to skip
        x = run_blocks(tap_block.conv[1:], tapped, checkpointed)
        return tapped, run_blocks(self.feature_extractor[TAP_BLOCK + 1 :], x, checkpointed)


def separable_head(in_channels: int, out_channels: int) -> nn.Sequential:
    """Depthwise 3x3 -> BN -> ReLU6 -> pointwise 1x1."""
    return nn.Sequential(
        nn.Conv2d(in_channels, in_channels, kernel_size=3, padding=1, groups=in_channels),
        nn.BatchNorm2d(in_channels),
        nn.ReLU6(),
        nn.Conv2d(in_channels, out_channels, kernel_size=1),
    )


class SSDLite(nn.Module):
    """SSDLite-MobileNetV2: ``forward`` returns ``(locs [N, 4, A], confs [N, C, A])``.

    ``activation_checkpointing``: one of :data:`ssd.models.checkpointing.MODES`.
    """

    def __init__(self, model_config: ModelConfig, num_classes: int, backbone_weights: str | Path | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.activation_checkpointing = "off"
        self.feature_extractor = MobileNetV2(backbone_weights)
        self.additional_blocks = nn.ModuleList(
            [
                InvertedResidual(1280, 512, stride=2, expand_ratio=0.2),
                InvertedResidual(512, 256, stride=2, expand_ratio=0.25),
                InvertedResidual(256, 256, stride=2, expand_ratio=0.5),
                InvertedResidual(256, 64, stride=2, expand_ratio=0.25),
            ]
        )
        num_defaults = model_config.head.num_defaults
        self.loc = nn.ModuleList(separable_head(c, nd * 4) for c, nd in zip(HEAD_CHANNELS, num_defaults))
        self.conf = nn.ModuleList(separable_head(c, nd * num_classes) for c, nd in zip(HEAD_CHANNELS, num_defaults))
        xavier_init(self.additional_blocks, self.loc, self.conf)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        everything = self.activation_checkpointing == "all"
        tapped, x = self.feature_extractor(x, checkpointed=self.activation_checkpointing != "off")
        features = [tapped, x]
        for block in self.additional_blocks:
            x = run_block(block, x, everything)
            features.append(x)
        return flatten_predictions(features, self.loc, self.conf, self.num_classes, checkpointed=everything)


ARCHITECTURE = Architecture("ssdlite", read_config=read_ssdlite_config, build=SSDLite)
