"""Configs: YAML (or reference-style Python) files loaded into validated, typed dataclasses.

A config has a ``model`` section (image size, anchors, layer specs) and an optional ``dataset``
section (Cognata scenarios and cameras, ignored classes, label map mode). The keys are those of the
MLCommons reference configs, so a reference ``config/<name>.py`` file loads unchanged. Every check
happens here, once, and a failure raises :class:`ConfigError` naming the file and the field.

Feature-map sizes are derived from the image size and the layers (:mod:`ssd.geometry`); a config may
state them as ``feat_size`` and a stated size that disagrees is an error naming both.
"""
from __future__ import annotations

import math
import runpy
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

from ssd import geometry
from ssd.errors import SSDError
from ssd.geometry import BackboneEdit, ConvSpec, ExtraBlockSpec

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data; the repository's configs/ links here
ARCHS = ("ssd", "ssdlite")
DEFAULT_IGNORE_CLASSES = (2, 25, 31)
RESNET_OUT_CHANNELS = (1024, 512, 512, 256, 256, 256)
RESNET_MIDDLE_CHANNELS = (256, 256, 128, 128, 128)


class ConfigError(SSDError, ValueError):
    """A config file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class HeadSpec:
    """Per-map detection heads: default boxes per location and the loc/conf conv specs."""

    num_defaults: tuple[int, ...]
    loc: tuple[ConvSpec, ...]
    conf: tuple[ConvSpec, ...]


@dataclass(frozen=True)
class ModelConfig:
    """Everything that shapes the network and its default boxes.

    ``feature_sizes`` are (rows, columns) of each prediction map, derived from the layers.
    ``middle_channels`` are the widths of the extra blocks' first convs, with the reference's quirk
    applied (``feature_out_channels`` when ``feature_in_channels`` is given).
    """

    arch: str
    image_size: tuple[int, int]
    steps: tuple[float, ...]
    scales: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]
    head: HeadSpec
    feature_sizes: tuple[tuple[int, int], ...]
    backbone_edits: tuple[BackboneEdit, ...] = ()
    extra_blocks: tuple[ExtraBlockSpec, ...] = ()
    out_channels: tuple[int, ...] = ()
    middle_channels: tuple[int, ...] = ()
    variances: tuple[float, float] = (0.1, 0.2)

    @property
    def num_maps(self) -> int:
        return len(self.feature_sizes)

    @property
    def num_anchors(self) -> int:
        return sum(nd * h * w for nd, (h, w) in zip(self.head.num_defaults, self.feature_sizes))


@dataclass(frozen=True)
class DatasetConfig:
    """The Cognata part of a config: which scenarios and cameras, which classes to drop."""

    folders: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()
    ignore_classes: tuple[int, ...] = DEFAULT_IGNORE_CLASSES
    use_label_info: bool = True


@dataclass(frozen=True)
class Config:
    """A loaded config: its name, where it came from, and the two sections."""

    name: str
    source: Path
    model: ModelConfig
    dataset: DatasetConfig = field(default_factory=DatasetConfig)


def available_configs() -> list[str]:
    """Names of the configs shipped with the package (``ssd/configs``, ``configs/`` in the repository)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str | Path) -> Path:
    """Find a config by file path, or by name (``.yaml`` or ``.py``) in ``./configs``, then among those shipped."""
    candidate = Path(name_or_path)
    if candidate.is_file():
        return candidate
    for folder in (Path.cwd() / "configs", CONFIG_DIR):
        for suffix in (".yaml", ".yml", ".py"):
            path = folder / f"{name_or_path}{suffix}"
            if path.is_file():
                return path
    known = ", ".join(available_configs()) or "none"
    raise ConfigError(f"config {str(name_or_path)!r} not found: not a file and not one of: {known}")


def load_config(name_or_path: str | Path) -> Config:
    """Load and validate a config given by name (``configs/<name>.yaml``) or by path.

    A ``.py`` path is read as a reference-style config defining ``model = dict(...)`` and
    optionally ``dataset = dict(...)``.
    """
    path = resolve_config_path(name_or_path)
    raw = _read_raw(path)
    parser = _Parser(path)
    model = parser.model(parser.section(raw, "model", required=True))
    dataset = parser.dataset(parser.section(raw, "dataset", required=False))
    return Config(name=path.stem, source=path, model=model, dataset=dataset)


def _read_raw(path: Path) -> dict[str, Any]:
    if path.suffix == ".py":
        try:
            namespace = runpy.run_path(str(path))
        except Exception as exc:  # a user's Python file can fail in any way
            raise ConfigError(f"{path}: cannot execute Python config: {exc}") from exc
        return {key: namespace[key] for key in ("model", "dataset") if key in namespace}
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'model' section at the top level")
    return raw


class _Parser:
    """Turns raw dicts into dataclasses; every error names the file and the dotted field."""

    def __init__(self, path: Path):
        self.path = path

    def error(self, field_name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.path}: {field_name}: {message}")

    def section(self, raw: dict[str, Any], key: str, required: bool) -> dict[str, Any]:
        value = raw.get(key)
        if value is None:
            if required:
                raise self.error(key, "missing section")
            return {}
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, got {type(value).__name__}")
        return value

    # -- scalar helpers -------------------------------------------------------------------------
    def number(self, value: Any, name: str) -> float:
        if isinstance(value, str):
            try:
                return float(Fraction(value.replace(" ", "")))
            except (ValueError, ZeroDivisionError):
                raise self.error(name, f"expected a number or fraction like '1/3', got {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"expected a number, got {value!r}")
        if not math.isfinite(value) or value <= 0:
            raise self.error(name, f"expected a positive number, got {value!r}")
        return float(value)

    def integer(self, value: Any, name: str, minimum: int = 0) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(name, f"expected an integer >= {minimum}, got {value!r}")
        return value

    def pair(self, value: Any, name: str, minimum: int = 0) -> tuple[int, int]:
        if isinstance(value, (list, tuple)):
            if len(value) != 2:
                raise self.error(name, f"expected 2 values (height, width), got {len(value)}")
            return (self.integer(value[0], name, minimum), self.integer(value[1], name, minimum))
        single = self.integer(value, name, minimum)
        return (single, single)

    def sequence(self, raw: dict[str, Any], key: str, prefix: str) -> list[Any]:
        if key not in raw:
            raise self.error(f"{prefix}.{key}", "missing")
        value = raw[key]
        if not isinstance(value, (list, tuple)) or not value:
            raise self.error(f"{prefix}.{key}", f"expected a non-empty list, got {value!r}")
        return list(value)

    def expect_length(self, values: list[Any] | tuple[Any, ...], length: int, name: str, why: str) -> None:
        if len(values) != length:
            raise self.error(name, f"has {len(values)} entries, expected {length} ({why})")

    def conv(self, raw: Any, name: str, default_stride: int = 1) -> ConvSpec:
        if not isinstance(raw, dict):
            raise self.error(name, f"expected a mapping with kernel_size/padding/stride, got {raw!r}")
        if "kernel_size" not in raw:
            raise self.error(f"{name}.kernel_size", "missing")
        return ConvSpec(
            kernel_size=self.pair(raw["kernel_size"], f"{name}.kernel_size", minimum=1),
            stride=self.pair(raw.get("stride", default_stride), f"{name}.stride", minimum=1),
            padding=self.pair(raw.get("padding", 0), f"{name}.padding"),
        )

    # -- sections -------------------------------------------------------------------------------
    def model(self, raw: dict[str, Any]) -> ModelConfig:
        arch = raw.get("arch", "ssd")
        if arch not in ARCHS:
            raise self.error("model.arch", f"expected one of {ARCHS}, got {arch!r}")
        if "image_size" not in raw:
            raise self.error("model.image_size", "missing")
        image_size = self.pair(raw["image_size"], "model.image_size", minimum=1)
        steps = tuple(self.number(v, f"model.steps[{i}]") for i, v in enumerate(self.sequence(raw, "steps", "model")))
        num_maps = len(steps)
        scales = tuple(self.number(v, f"model.scales[{i}]") for i, v in enumerate(self.sequence(raw, "scales", "model")))
        self.expect_length(scales, num_maps + 1, "model.scales", f"one more than the {num_maps} maps of model.steps")
        ratios_raw = self.sequence(raw, "aspect_ratios", "model")
        self.expect_length(ratios_raw, num_maps, "model.aspect_ratios", f"one list per map, {num_maps} maps")
        aspect_ratios = []
        for k, ratios in enumerate(ratios_raw):
            if not isinstance(ratios, (list, tuple)):
                raise self.error(f"model.aspect_ratios[{k}]", f"expected a list, got {ratios!r}")
            aspect_ratios.append(tuple(self.number(a, f"model.aspect_ratios[{k}][{j}]") for j, a in enumerate(ratios)))
        boxes_per_location = tuple(2 + len(r) for r in aspect_ratios)

        if arch == "ssdlite":
            model = self._ssdlite(raw, image_size, steps, scales, tuple(aspect_ratios), boxes_per_location)
        else:
            model = self._resnet(raw, image_size, steps, scales, tuple(aspect_ratios), boxes_per_location)
        self._check_stated_sizes(raw, model)
        return model

    def _head(self, raw: dict[str, Any], num_maps: int, boxes_per_location: tuple[int, ...]) -> HeadSpec:
        head_raw = raw.get("head")
        default_conv = {"kernel_size": 3, "padding": 1, "stride": 1}
        if head_raw is None:
            head_raw = {"num_defaults": list(boxes_per_location), "loc": [default_conv] * num_maps, "conf": [default_conv] * num_maps}
        if not isinstance(head_raw, dict):
            raise self.error("model.head", f"expected a mapping, got {head_raw!r}")
        num_defaults = tuple(
            self.integer(v, f"model.head.num_defaults[{i}]", 1)
            for i, v in enumerate(self.sequence(head_raw, "num_defaults", "model.head"))
        )
        self.expect_length(num_defaults, num_maps, "model.head.num_defaults", f"one per map, {num_maps} maps")
        for k, (nd, expected) in enumerate(zip(num_defaults, boxes_per_location)):
            if nd != expected:
                raise self.error(
                    f"model.head.num_defaults[{k}]",
                    f"is {nd} but model.aspect_ratios[{k}] gives {expected} default boxes (2 + one per ratio)",
                )
        specs = {}
        for part in ("loc", "conf"):
            entries = self.sequence(head_raw, part, "model.head")
            self.expect_length(entries, num_maps, f"model.head.{part}", f"one per map, {num_maps} maps")
            specs[part] = tuple(self.conv(e, f"model.head.{part}[{i}]") for i, e in enumerate(entries))
        return HeadSpec(num_defaults=num_defaults, loc=specs["loc"], conf=specs["conf"])

    def _resnet(self, raw, image_size, steps, scales, aspect_ratios, boxes_per_location) -> ModelConfig:
        num_maps = len(steps)
        blocks_raw = self.sequence(raw, "middle_blocks", "model")
        self.expect_length(blocks_raw, num_maps - 1, "model.middle_blocks", f"one fewer than the {num_maps} maps")
        extra_blocks = tuple(self._extra_block(b, f"model.middle_blocks[{i}]") for i, b in enumerate(blocks_raw))
        edits_raw = raw.get("backbone")
        edits = tuple(self._backbone_edit(e, f"model.backbone[{i}]") for i, e in enumerate(edits_raw)) if edits_raw else geometry.DEFAULT_BACKBONE_EDITS

        if raw.get("feature_out_channels") is not None:
            out_channels = tuple(
                self.integer(v, f"model.feature_out_channels[{i}]", 1) for i, v in enumerate(raw["feature_out_channels"])
            )
            self.expect_length(out_channels, num_maps, "model.feature_out_channels", f"one per map, {num_maps} maps")
            if out_channels[0] != 1024:
                raise self.error("model.feature_out_channels[0]", f"must be 1024 (ResNet-50 layer3 output), got {out_channels[0]}")
        elif num_maps <= len(RESNET_OUT_CHANNELS):
            out_channels = RESNET_OUT_CHANNELS[:num_maps]
        else:
            raise self.error("model.feature_out_channels", f"required for more than {len(RESNET_OUT_CHANNELS)} maps")
        if raw.get("feature_in_channels") is not None:
            # Reference quirk kept for checkpoint compatibility: with feature_in_channels present the
            # reference builds the extra blocks' middle convs with feature_out_channels' widths.
            middle_channels = out_channels[: num_maps - 1]
        elif num_maps - 1 <= len(RESNET_MIDDLE_CHANNELS):
            middle_channels = RESNET_MIDDLE_CHANNELS[: num_maps - 1]
        else:
            raise self.error("model.feature_in_channels", f"required for more than {len(RESNET_MIDDLE_CHANNELS) + 1} maps")

        head = self._head(raw, num_maps, boxes_per_location)
        try:
            backbone_size = geometry.resnet_backbone_size(image_size, edits)
            map_sizes = geometry.extra_block_sizes(backbone_size, extra_blocks)
            feature_sizes = geometry.head_sizes(map_sizes, head.loc, head.conf)
        except geometry.GeometryError as exc:
            raise self.error("model", str(exc)) from exc
        return ModelConfig(
            arch="ssd", image_size=image_size, steps=steps, scales=scales, aspect_ratios=aspect_ratios,
            head=head, feature_sizes=feature_sizes, backbone_edits=edits, extra_blocks=extra_blocks,
            out_channels=out_channels, middle_channels=middle_channels,
        )

    def _ssdlite(self, raw, image_size, steps, scales, aspect_ratios, boxes_per_location) -> ModelConfig:
        num_maps = len(steps)
        if num_maps != geometry.SSDLITE_NUM_MAPS:
            raise self.error("model.steps", f"SSDLite has {geometry.SSDLITE_NUM_MAPS} maps, got {num_maps}")
        if len(set(boxes_per_location)) != 1:
            raise self.error("model.aspect_ratios", "SSDLite heads need the same number of ratios on every map")
        ones = (ConvSpec((3, 3), (1, 1), (1, 1)),) * num_maps
        head = HeadSpec(num_defaults=boxes_per_location, loc=ones, conf=ones)
        try:
            feature_sizes = geometry.ssdlite_sizes(image_size)
        except geometry.GeometryError as exc:
            raise self.error("model.image_size", str(exc)) from exc
        return ModelConfig(
            arch="ssdlite", image_size=image_size, steps=steps, scales=scales, aspect_ratios=aspect_ratios,
            head=head, feature_sizes=feature_sizes,
        )

    def _extra_block(self, raw: Any, name: str) -> ExtraBlockSpec:
        if not isinstance(raw, dict):
            raise self.error(name, f"expected a mapping with kernel_size/padding/stride pairs, got {raw!r}")
        convs = []
        for index in range(2):
            spec = {}
            for key in ("kernel_size", "padding", "stride"):
                if key not in raw:
                    raise self.error(f"{name}.{key}", "missing")
                values = raw[key]
                if not isinstance(values, (list, tuple)) or len(values) != 2:
                    raise self.error(f"{name}.{key}", f"expected 2 values (first conv, second conv), got {values!r}")
                spec[key] = values[index]
            convs.append(self.conv(spec, f"{name}[conv {index + 1}]"))
        return ExtraBlockSpec(first=convs[0], second=convs[1])

    def _backbone_edit(self, raw: Any, name: str) -> BackboneEdit:
        if not isinstance(raw, dict):
            raise self.error(name, f"expected a mapping, got {raw!r}")
        block_no = self.integer(raw.get("block_no"), f"{name}.block_no")
        if block_no not in geometry.EDITABLE_BLOCKS:
            raise self.error(f"{name}.block_no", f"expected one of {sorted(geometry.EDITABLE_BLOCKS)}, got {block_no}")
        convs_raw = raw.get("conv") or {}
        if block_no == 0:
            return BackboneEdit(block_no=0, layer=0, convs=((1, self.conv(convs_raw, f"{name}.conv")),), downsample_stride=None)
        if isinstance(convs_raw, (list, tuple)):  # reference form: [{1: {...}, 2: {...}}]
            merged: dict[Any, Any] = {}
            for item in convs_raw:
                if not isinstance(item, dict):
                    raise self.error(f"{name}.conv", f"expected mappings of conv number to spec, got {item!r}")
                merged.update(item)
            convs_raw = merged
        convs = {}
        for key, spec in convs_raw.items():
            number = int(key)
            if number not in (1, 2, 3):
                raise self.error(f"{name}.conv", f"conv number must be 1, 2 or 3, got {key!r}")
            convs[number] = self.conv(spec, f"{name}.conv.{number}")
        layer = self.integer(raw.get("layer", 0), f"{name}.layer")
        if layer >= geometry.RESNET50_BLOCKS[block_no]:
            raise self.error(f"{name}.layer", f"block {block_no} has {geometry.RESNET50_BLOCKS[block_no]} bottlenecks, got {layer}")
        downsample = raw.get("downsample")
        stride = None
        if downsample is not None:
            if layer != 0:
                raise self.error(f"{name}.downsample", "only the first bottleneck of a block has a downsample")
            if not isinstance(downsample, dict) or "stride" not in downsample:
                raise self.error(f"{name}.downsample", f"expected a mapping with a stride, got {downsample!r}")
            stride = self.pair(downsample["stride"], f"{name}.downsample.stride", minimum=1)
        return BackboneEdit(block_no=block_no, layer=layer, convs=tuple(sorted(convs.items())), downsample_stride=stride)

    def _check_stated_sizes(self, raw: dict[str, Any], model: ModelConfig) -> None:
        stated = raw.get("feat_size")
        if stated is None:
            return
        if not isinstance(stated, (list, tuple)):
            raise self.error("model.feat_size", f"expected a list of (height, width), got {stated!r}")
        stated_sizes = tuple(self.pair(s, f"model.feat_size[{i}]", 1) for i, s in enumerate(stated))
        if stated_sizes != model.feature_sizes:
            raise self.error(
                "model.feat_size",
                f"stated {list(stated_sizes)} but the layers give {list(model.feature_sizes)} "
                f"for image_size {model.image_size}",
            )

    def dataset(self, raw: dict[str, Any]) -> DatasetConfig:
        folders = raw.get("folders")
        if folders is None:  # older reference configs split scenarios into train/val lists
            folders = list(dict.fromkeys([*raw.get("train_folders", []), *raw.get("val_folders", [])]))
        cameras = raw.get("cameras", [])
        for key, values in (("folders", folders), ("cameras", cameras)):
            if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
                raise self.error(f"dataset.{key}", f"expected a list of names, got {values!r}")
        ignore = raw.get("ignore_classes", list(DEFAULT_IGNORE_CLASSES))
        if not isinstance(ignore, (list, tuple)):
            raise self.error("dataset.ignore_classes", f"expected a list of class ids, got {ignore!r}")
        ignore_classes = tuple(self.integer(v, f"dataset.ignore_classes[{i}]") for i, v in enumerate(ignore))
        use_label_info = raw.get("use_label_info", True)
        if not isinstance(use_label_info, bool):
            raise self.error("dataset.use_label_info", f"expected true or false, got {use_label_info!r}")
        return DatasetConfig(
            folders=tuple(folders), cameras=tuple(cameras), ignore_classes=ignore_classes, use_label_info=use_label_info
        )
