"""Layer specs and the arithmetic that turns an image size into feature-map sizes.

The reference asks users to read feature-map sizes off a model summary and type them into the
config; here they follow from the same convolution arithmetic the layers perform, so no forward
pass (and no 8 MP activation) is needed to know them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ssd.errors import SSDError


class GeometryError(SSDError, ValueError):
    """Layer specs that cannot produce valid feature maps for the image size."""


@dataclass(frozen=True)
class ConvSpec:
    """Kernel, stride and padding of one convolution, each as (height, width)."""

    kernel_size: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True)
class BackboneEdit:
    """A change to the ResNet backbone, as the reference's ``backbone`` entries describe it.

    ``block_no`` indexes ``list(resnet.children())``: 0 is the stem convolution, 4-6 are layer1-3.
    ``convs`` pairs a bottleneck's conv number (1, 2, 3) with its new spec (a tuple, so configs hash).
    """

    block_no: int
    layer: int
    convs: tuple[tuple[int, ConvSpec], ...]
    downsample_stride: tuple[int, int] | None


@dataclass(frozen=True)
class ExtraBlockSpec:
    """One extra feature block: a reducing conv then an expanding conv (reference ``middle_blocks``)."""

    first: ConvSpec
    second: ConvSpec


@dataclass(frozen=True)
class BottleneckSpec:
    """The three convs of one ResNet bottleneck and, for a block's first one, the downsample stride."""

    block_no: int
    layer: int
    convs: tuple[ConvSpec, ConvSpec, ConvSpec]
    downsample_stride: tuple[int, int] | None


# list(resnet50().children()) index -> number of bottlenecks (layer1, layer2, layer3)
RESNET50_BLOCKS = {4: 3, 5: 4, 6: 6}
RESNET50_FIRST_STRIDE = {4: 1, 5: 2, 6: 2}
EDITABLE_BLOCKS = frozenset({0, *RESNET50_BLOCKS})
STEM = ConvSpec((7, 7), (2, 2), (3, 3))
MAXPOOL = ConvSpec((3, 3), (2, 2), (1, 1))
# The SSD-ResNet50 edit: layer3's first bottleneck at stride 1, so the backbone ends at stride 8.
DEFAULT_BACKBONE_EDITS = (
    BackboneEdit(
        block_no=6,
        layer=0,
        convs=((1, ConvSpec((1, 1), (1, 1), (0, 0))), (2, ConvSpec((3, 3), (1, 1), (1, 1)))),
        downsample_stride=(1, 1),
    ),
)
SSDLITE_NUM_MAPS = 6
# MobileNetV2: stride-2 3x3 convs before block 14's expansion (stem, blocks 2, 4, 7), then block 14.
_SSDLITE_HALVINGS_TO_FIRST_MAP = 4
_HALVING = ConvSpec((3, 3), (2, 2), (1, 1))


def conv_output_size(size: tuple[int, int], conv: ConvSpec) -> tuple[int, int]:
    """Output (rows, columns) of a convolution or pooling with ``conv``'s geometry (dilation 1)."""
    out = tuple(
        (n + 2 * p - k) // s + 1 for n, k, s, p in zip(size, conv.kernel_size, conv.stride, conv.padding)
    )
    if min(out) < 1:
        raise GeometryError(f"a {conv} layer turns a {size[0]}x{size[1]} map into {out[0]}x{out[1]}: image too small")
    return out  # type: ignore[return-value]


def resnet_specs(edits: tuple[BackboneEdit, ...]) -> tuple[ConvSpec, tuple[BottleneckSpec, ...]]:
    """The stem conv and every bottleneck of ResNet-50 layer1..layer3 with ``edits`` applied.

    As in the reference, an edit changes stride and padding of an existing conv; it cannot change a
    kernel size (the weights keep their shape), so a differing kernel size is an error.
    """
    stem = STEM
    bottlenecks = {}
    for block_no, count in RESNET50_BLOCKS.items():
        for layer in range(count):
            stride = RESNET50_FIRST_STRIDE[block_no] if layer == 0 else 1
            convs = (ConvSpec((1, 1), (1, 1), (0, 0)), ConvSpec((3, 3), (stride, stride), (1, 1)), ConvSpec((1, 1), (1, 1), (0, 0)))
            downsample = (stride, stride) if layer == 0 else None
            bottlenecks[(block_no, layer)] = BottleneckSpec(block_no, layer, convs, downsample)
    for edit in edits:
        if edit.block_no == 0:
            stem = _edited(stem, dict(edit.convs)[1], "backbone stem conv")
            continue
        spec = bottlenecks[(edit.block_no, edit.layer)]
        convs = list(spec.convs)
        for number, new in edit.convs:
            convs[number - 1] = _edited(convs[number - 1], new, f"backbone block {edit.block_no}[{edit.layer}].conv{number}")
        downsample = spec.downsample_stride if edit.downsample_stride is None else edit.downsample_stride
        bottlenecks[(edit.block_no, edit.layer)] = replace(spec, convs=tuple(convs), downsample_stride=downsample)
    return stem, tuple(bottlenecks.values())


def _edited(original: ConvSpec, new: ConvSpec, name: str) -> ConvSpec:
    if new.kernel_size != original.kernel_size:
        raise GeometryError(f"{name}: kernel_size {new.kernel_size} differs from the pretrained layer's {original.kernel_size}")
    return new


def resnet_backbone_size(image_size: tuple[int, int], edits: tuple[BackboneEdit, ...]) -> tuple[int, int]:
    """Size of the ResNet-50 layer3 output for ``image_size`` with the backbone ``edits``."""
    stem, bottlenecks = resnet_specs(edits)
    size = conv_output_size(conv_output_size(image_size, stem), MAXPOOL)
    for spec in bottlenecks:
        main = size
        for conv in spec.convs:
            main = conv_output_size(main, conv)
        if spec.downsample_stride is not None:
            shortcut = conv_output_size(size, ConvSpec((1, 1), spec.downsample_stride, (0, 0)))
        else:
            shortcut = size
        if shortcut != main:
            raise GeometryError(
                f"backbone block {spec.block_no}[{spec.layer}]: main path gives {main}, shortcut gives {shortcut}"
            )
        size = main
    return size


def extra_block_sizes(backbone_size: tuple[int, int], blocks: tuple[ExtraBlockSpec, ...]) -> tuple[tuple[int, int], ...]:
    """Sizes of every feature map: the backbone output, then each extra block's output."""
    sizes = [backbone_size]
    for block in blocks:
        sizes.append(conv_output_size(conv_output_size(sizes[-1], block.first), block.second))
    return tuple(sizes)


def head_sizes(
    map_sizes: tuple[tuple[int, int], ...], loc: tuple[ConvSpec, ...], conf: tuple[ConvSpec, ...]
) -> tuple[tuple[int, int], ...]:
    """Prediction-grid sizes: each map through its loc head (the conf head must agree)."""
    grids = []
    for k, (size, loc_conv, conf_conv) in enumerate(zip(map_sizes, loc, conf)):
        loc_size, conf_size = conv_output_size(size, loc_conv), conv_output_size(size, conf_conv)
        if loc_size != conf_size:
            raise GeometryError(f"head {k}: loc conv gives {loc_size} but conf conv gives {conf_size}")
        grids.append(loc_size)
    return tuple(grids)


def ssdlite_sizes(image_size: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """SSDLite-MobileNetV2 map sizes: block 14's expansion (stride 16), the last map, 4 extra blocks."""
    size = image_size
    for _ in range(_SSDLITE_HALVINGS_TO_FIRST_MAP):
        size = conv_output_size(size, _HALVING)
    sizes = [size]
    for _ in range(SSDLITE_NUM_MAPS - 1):
        sizes.append(conv_output_size(sizes[-1], _HALVING))
    return tuple(sizes)
