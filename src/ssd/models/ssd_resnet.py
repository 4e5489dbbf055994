"""SSD-ResNet50, laid out exactly like the reference so its checkpoints load key for key: its config
fields (:func:`read_resnet_config`), its network (:class:`SSD`) and its entry in the architecture table."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor, nn
from torchvision.models import ResNet50_Weights, resnet50

from ssd import geometry
from ssd.architectures import Architecture
from ssd.config import ArchitectureFields, FieldReader, ModelConfig, SharedModelFields
from ssd.geometry import BackboneEdit, ExtraBlockSpec, resnet_specs
from ssd.models.backbone_weights import load_backbone_weights
from ssd.models.checkpointing import run_block, run_blocks, run_checkpointed
from ssd.models.heads import flatten_predictions, xavier_init


RESNET_OUT_CHANNELS = (1024, 512, 512, 256, 256, 256)
RESNET_MIDDLE_CHANNELS = (256, 256, 128, 128, 128)
STEM_MODULES = 4  # conv1, bn1, relu, maxpool; layer1..layer3 follow


@dataclass(frozen=True)
class ResNetLayers:
    """The layers an SSD-ResNet50 config describes (``ModelConfig.layers``).

    ``middle_channels`` are the widths of the extra blocks' first convs, with the reference's quirk
    applied (``feature_out_channels`` when ``feature_in_channels`` is given).
    """

    backbone_edits: tuple[BackboneEdit, ...]
    extra_blocks: tuple[ExtraBlockSpec, ...]
    out_channels: tuple[int, ...]
    middle_channels: tuple[int, ...]


def read_resnet_config(reader: FieldReader, raw: dict[str, Any], shared: SharedModelFields) -> ArchitectureFields:
    """``middle_blocks``, ``backbone`` edits, ``feature_out_channels`` / ``feature_in_channels`` and ``head``."""
    num_maps = len(shared.steps)
    blocks_raw = reader.sequence(raw, "middle_blocks", "model")
    reader.expect_length(blocks_raw, num_maps - 1, "model.middle_blocks", f"one fewer than the {num_maps} maps")
    extra_blocks = tuple(_extra_block(reader, b, f"model.middle_blocks[{i}]") for i, b in enumerate(blocks_raw))
    edits_raw = raw.get("backbone")
    edits = tuple(_backbone_edit(reader, e, f"model.backbone[{i}]") for i, e in enumerate(edits_raw)) if edits_raw else geometry.DEFAULT_BACKBONE_EDITS

    if raw.get("feature_out_channels") is not None:
        out_channels = tuple(
            reader.integer(v, f"model.feature_out_channels[{i}]", 1) for i, v in enumerate(raw["feature_out_channels"])
        )
        reader.expect_length(out_channels, num_maps, "model.feature_out_channels", f"one per map, {num_maps} maps")
        if out_channels[0] != 1024:
            raise reader.error("model.feature_out_channels[0]", f"must be 1024 (ResNet-50 layer3 output), got {out_channels[0]}")
    elif num_maps <= len(RESNET_OUT_CHANNELS):
        out_channels = RESNET_OUT_CHANNELS[:num_maps]
    else:
        raise reader.error("model.feature_out_channels", f"required for more than {len(RESNET_OUT_CHANNELS)} maps")
    if raw.get("feature_in_channels") is not None:
        # Reference quirk kept for checkpoint compatibility: with feature_in_channels present the
        # reference builds the extra blocks' middle convs with feature_out_channels' widths.
        middle_channels = out_channels[: num_maps - 1]
    elif num_maps - 1 <= len(RESNET_MIDDLE_CHANNELS):
        middle_channels = RESNET_MIDDLE_CHANNELS[: num_maps - 1]
    else:
        raise reader.error("model.feature_in_channels", f"required for more than {len(RESNET_MIDDLE_CHANNELS) + 1} maps")

    head = reader.head(raw, shared.boxes_per_location)
    try:
        backbone_size = geometry.resnet_backbone_size(shared.image_size, edits)
        map_sizes = geometry.extra_block_sizes(backbone_size, extra_blocks)
        feature_sizes = geometry.head_sizes(map_sizes, head.loc, head.conf)
    except geometry.GeometryError as exc:
        raise reader.error("model", str(exc)) from exc
    layers = ResNetLayers(backbone_edits=edits, extra_blocks=extra_blocks, out_channels=out_channels, middle_channels=middle_channels)
    return ArchitectureFields(head=head, feature_sizes=feature_sizes, layers=layers)


def _extra_block(reader: FieldReader, raw: Any, name: str) -> ExtraBlockSpec:
    if not isinstance(raw, dict):
        raise reader.error(name, f"expected a mapping with kernel_size/padding/stride pairs, got {raw!r}")
    convs = []
    for index in range(2):
        spec = {}
        for key in ("kernel_size", "padding", "stride"):
            if key not in raw:
                raise reader.error(f"{name}.{key}", "missing")
            values = raw[key]
            if not isinstance(values, (list, tuple)) or len(values) != 2:
                raise reader.error(f"{name}.{key}", f"expected 2 values (first conv, second conv), got {values!r}")
            spec[key] = values[index]
        convs.append(reader.conv(spec, f"{name}[conv {index + 1}]"))
    return ExtraBlockSpec(first=convs[0], second=convs[1])


def _backbone_edit(reader: FieldReader, raw: Any, name: str) -> BackboneEdit:
    if not isinstance(raw, dict):
        raise reader.error(name, f"expected a mapping, got {raw!r}")
    block_no = reader.integer(raw.get("block_no"), f"{name}.block_no")
    if block_no not in geometry.EDITABLE_BLOCKS:
        raise reader.error(f"{name}.block_no", f"expected one of {sorted(geometry.EDITABLE_BLOCKS)}, got {block_no}")
    convs_raw = raw.get("conv") or {}
    if block_no == 0:
        return BackboneEdit(block_no=0, layer=0, convs=((1, reader.conv(convs_raw, f"{name}.conv")),), downsample_stride=None)
    if isinstance(convs_raw, (list, tuple)):  # reference form: [{1: {...}, 2: {...}}]
        merged: dict[Any, Any] = {}
        for item in convs_raw:
            if not isinstance(item, dict):
                raise reader.error(f"{name}.conv", f"expected mappings of conv number to spec, got {item!r}")
            merged.update(item)
        convs_raw = merged
    convs = {}
    for key, spec in convs_raw.items():
        number = int(key)
        if number not in (1, 2, 3):
            raise reader.error(f"{name}.conv", f"conv number must be 1, 2 or 3, got {key!r}")
        convs[number] = reader.conv(spec, f"{name}.conv.{number}")
    layer = reader.integer(raw.get("layer", 0), f"{name}.layer")
    if layer >= geometry.RESNET50_BLOCKS[block_no]:
        raise reader.error(f"{name}.layer", f"block {block_no} has {geometry.RESNET50_BLOCKS[block_no]} bottlenecks, got {layer}")
    downsample = raw.get("downsample")
    stride = None
    if downsample is not None:
        if layer != 0:
            raise reader.error(f"{name}.downsample", "only the first bottleneck of a block has a downsample")
        if not isinstance(downsample, dict) or "stride" not in downsample:
            raise reader.error(f"{name}.downsample", f"expected a mapping with a stride, got {downsample!r}")
        stride = reader.pair(downsample["stride"], f"{name}.downsample.stride", minimum=1)
    return BackboneEdit(block_no=block_no, layer=layer, convs=tuple(sorted(convs.items())), downsample_stride=stride)


class ResNet(nn.Module):
    """ResNet-50 stem + layer1..layer3 (``children()[:7]``) with the config's stride edits."""

    def __init__(self, model_config: ModelConfig, weights: str | Path | None = None):
        super().__init__()
        backbone = resnet50(weights=None)
        if weights is not None:
            load_backbone_weights(backbone, weights, Path(ResNet50_Weights.IMAGENET1K_V1.url).name)
        layers: ResNetLayers = model_config.layers
        self.out_channels = layers.out_channels
        self.feature_extractor = nn.Sequential(*list(backbone.children())[:7])
        stem, bottlenecks = resnet_specs(layers.backbone_edits)
        self.feature_extractor[0].stride, self.feature_extractor[0].padding = stem.stride, stem.padding
        for spec in bottlenecks:
            block = self.feature_extractor[spec.block_no][spec.layer]
            for conv, conv_spec in zip((block.conv1, block.conv2, block.conv3), spec.convs):
                conv.stride, conv.padding = conv_spec.stride, conv_spec.padding
            if spec.downsample_stride is not None:
                block.downsample[0].stride = spec.downsample_stride

    def forward(self, x: Tensor, checkpointed: bool = False) -> Tensor:
        """The stride-8 map; ``checkpointed``: the stem and each bottleneck recomputed in the backward pass."""
        if not checkpointed:
            return self.feature_extractor(x)
        x = run_checkpointed(self.feature_extractor[:STEM_MODULES], x)
        for stage in self.feature_extractor[STEM_MODULES:]:
            x = run_blocks(stage, x, checkpointed=True)
        return x


def extra_block(in_channels: int, middle: int, out_channels: int, spec: ExtraBlockSpec) -> nn.Sequential:
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
    ``activation_checkpointing``: one of :data:`ssd.models.checkpointing.MODES`.
    """

    def __init__(self, model_config: ModelConfig, num_classes: int, backbone_weights: str | Path | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.activation_checkpointing = "off"
        self.feature_extractor = ResNet(model_config, backbone_weights)
        layers: ResNetLayers = model_config.layers
        channels = layers.out_channels
        self.additional_blocks = nn.ModuleList(
            extra_block(c_in, middle, c_out, spec)
            for c_in, c_out, middle, spec in zip(channels[:-1], channels[1:], layers.middle_channels, layers.extra_blocks)
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
        x = self.feature_extractor(x, checkpointed=self.activation_checkpointing != "off")
        features = [x]
        for block in self.additional_blocks:
            x = run_block(block, x, checkpointed=self.activation_checkpointing == "all")
            features.append(x)
        return flatten_predictions(features, self.loc, self.conf, self.num_classes)


ARCHITECTURE = Architecture("ssd", read_config=read_resnet_config, build=SSD)
