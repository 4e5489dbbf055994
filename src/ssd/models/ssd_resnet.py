"""SSD-ResNet50, laid out exactly like the reference so its checkpoints load key for key."""
from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn
from torchvision.models import ResNet50_Weights, resnet50

from ssd.config import ModelConfig
from ssd.geometry import resnet_specs
from ssd.models.backbone_weights import load_backbone_weights
from ssd.models.heads import flatten_predictions, xavier_init


class ResNet(nn.Module):
    """ResNet-50 stem + layer1..layer3 (``children()[:7]``) with the config's stride edits."""

    def __init__(self, model_config: ModelConfig, weights: str | Path | None = None):
        super().__init__()
        backbone = resnet50(weights=None)
        if weights is not None:
            load_backbone_weights(backbone, weights, Path(ResNet50_Weights.IMAGENET1K_V1.url).name)
        self.out_channels = model_config.out_channels
        self.feature_extractor = nn.Sequential(*list(backbone.children())[:7])
        stem, bottlenecks = resnet_specs(model_config.backbone_edits)
        self.feature_extractor[0].stride, self.feature_extractor[0].padding = stem.stride, stem.padding
        for spec in bottlenecks:
            block = self.feature_extractor[spec.block_no][spec.layer]
            for conv, conv_spec in zip((block.conv1, block.conv2, block.conv3), spec.convs):
                conv.stride, conv.padding = conv_spec.stride, conv_spec.padding
            if spec.downsample_stride is not None:
                block.downsample[0].stride = spec.downsample_stride

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_extractor(x)


def extra_block(in_channels: int, middle: int, out_channels: int, spec) -> nn.Sequential:
    """conv (no bias) -> BN -> ReLU -> conv (no bias) -> BN -> ReLU, keys 0, 1, 3, 4 as in the reference."""
    return nn.Sequential(
        nn.Conv2d(in_channels, middle, spec.first.kernel_size, spec.first.stride, spec.first.padding, bias=False),
        nn.BatchNorm2d(middle),
        nn.ReLU(inplace=True),
        nn.Conv2d(middle, out_channels, spec.second.kernel_size, spec.second.stride, spec.second.padding, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class SSD(nn.Module):
    """SSD-ResNet50: backbone map at stride 8, extra blocks, a loc and a conf conv per map.

    ``forward`` returns ``(locs [N, 4, A], confs [N, C, A])`` in the anchors' order.
    """

    def __init__(self, model_config: ModelConfig, num_classes: int, backbone_weights: str | Path | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.feature_extractor = ResNet(model_config, backbone_weights)
        channels = model_config.out_channels
        self.additional_blocks = nn.ModuleList(
            extra_block(c_in, middle, c_out, spec)
            for c_in, c_out, middle, spec in zip(channels[:-1], channels[1:], model_config.middle_channels, model_config.extra_blocks)
        )
        head = model_config.head
        self.loc = nn.ModuleList(
            nn.Conv2d(c, nd * 4, spec.kernel_size, spec.stride, spec.padding)
            for c, nd, spec in zip(channels, head.num_defaults, head.loc)
        )
        self.conf = nn.ModuleList(
            nn.Conv2d(c, nd * num_classes, spec.kernel_size, spec.stride, spec.padding)
            for c, nd, spec in zip(channels, head.num_defaults, head.conf)
        )
        xavier_init(self.additional_blocks, self.loc, self.conf)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.feature_extractor(x)
        features = [x]
        for block in self.additional_blocks:
            x = block(x)
            features.append(x)
        return flatten_predictions(features, self.loc, self.conf, self.num_classes)
