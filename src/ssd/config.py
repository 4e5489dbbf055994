"""Configs: YAML (or reference-style Python) files loaded into validated, typed dataclasses.

A config has a ``model`` section (image size, anchors, layer specs) and an optional ``dataset``
section (Cognata scenarios and cameras, ignored classes, label map mode). The keys are those of the
MLCommons reference configs, so a reference ``config/<name>.py`` file loads unchanged. Every check
happens at load time, once, and a failure raises :class:`ConfigError` naming the file and the field.

This module reads what every architecture shares (image size, steps, scales, aspect ratios); the
architecture named by ``model.arch`` (:mod:`ssd.architectures`) reads its own layer fields with a
:class:`FieldReader` and derives the feature-map sizes. A config may state them as ``feat_size``;
a stated size that disagrees is an error naming both.

(Just over 300 lines on purpose: every check of the shared fields lives in this one module, next to
the dataclasses it fills, so that a config error is found and worded in one place.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from ssd import architectures
from ssd.errors import SSDError
from ssd.geometry import ConvSpec

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data; the repository's configs/ links here
DEFAULT_ARCH = "ssd"  # the reference's configs do not name their architecture


class ConfigError(SSDError, ValueError):
    """A config file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class HeadSpec:
    """Per-map detection heads: default boxes per location and the loc/conf conv specs."""

    num_defaults: tuple[int, ...]
    loc: tuple[ConvSpec, ...]
    conf: tuple[ConvSpec, ...]


@dataclass(frozen=True)
class SharedModelFields:
    """The model fields every architecture has: the input size and the default boxes' layout."""

    arch: str
    image_size: tuple[int, int]
    steps: tuple[float, ...]
    scales: tuple[float, ...]
    aspect_ratios: tuple[tuple[float, ...], ...]

    @property
    def boxes_per_location(self) -> tuple[int, ...]:
        """Default boxes per location of each map: two sizes plus one per aspect ratio."""
        return tuple(2 + len(ratios) for ratios in self.aspect_ratios)


class ArchitectureFields(NamedTuple):
    """What an architecture reads from the model section: heads, map sizes, its own layer spec."""

    head: HeadSpec
    feature_sizes: tuple[tuple[int, int], ...]
    layers: Any = None


@dataclass(frozen=True, kw_only=True)
class ModelConfig(SharedModelFields):
    """Everything that shapes the network and its default boxes.

    ``feature_sizes`` are (rows, columns) of each prediction map, derived from the layers.
    ``layers`` is the architecture's own description of its layers (e.g.
    :class:`ssd.models.ssd_resnet.ResNetLayers`), None when it has nothing to configure.
    """

    head: HeadSpec
    feature_sizes: tuple[tuple[int, int], ...]
    layers: Any = None

    @property
    def num_anchors(self) -> int:
        return sum(nd * h * w for nd, (h, w) in zip(self.head.num_defaults, self.feature_sizes))


@dataclass(frozen=True)
class DatasetConfig:
    """The Cognata part of a config: which scenarios and cameras, which classes to drop.

    ``ignore_classes`` None: the dataset's default (:data:`ssd.data.cognata.DEFAULT_IGNORE_CLASSES`).
    """

    folders: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ()
    ignore_classes: tuple[int, ...] | None = None
    use_label_info: bool = True


@dataclass(frozen=True)
class Config:
    """A loaded config: its name, where it came from, the two sections, and its text as it was read
    (a run records this text, never the file's later state: the file may be edited or removed mid-run)."""

    name: str
    source: Path
    model: ModelConfig
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    text: str = field(default="", repr=False, compare=False)

    def check_arch(self, requested: str | None) -> None:
        """Raise :class:`ConfigError` unless ``requested`` (``--model``; None: anything) is this config's architecture."""
        if requested is not None and requested != self.model.arch:
            raise ConfigError(f"--model {requested} but config {self.name!r} describes an {self.model.arch} model")


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
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a UTF-8 text file ({exc.reason} at byte {exc.start})") from exc
    return config_from_text(path.stem, path, text)


def config_from_text(name: str, source: Path, text: str) -> Config:
    """A config from its text (as read from ``source``, or as a checkpoint recorded it)."""
    raw = _read_raw(source, text)
    reader = FieldReader(source)
    model = _model_section(reader, reader.section(raw, "model", required=True))
    dataset = _dataset_section(reader, reader.section(raw, "dataset", required=False))
    return Config(name=name, source=source, model=model, dataset=dataset, text=text)


def _read_raw(path: Path, text: str) -> dict[str, Any]:
    """The config's sections from its ``text`` (a ``.py`` config is run from that text, not read again)."""
    if path.suffix == ".py":
        try:
            namespace: dict[str, Any] = {"__file__": str(path), "__name__": "__config__"}
            exec(compile(text, str(path), "exec"), namespace)  # noqa: S102 - a reference-style config is Python by design
        except Exception as exc:  # a user's Python file can fail in any way
            raise ConfigError(f"{path}: cannot execute Python config: {exc}") from exc
        return {key: namespace[key] for key in ("model", "dataset") if key in namespace}
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping with a 'model' section at the top level")
    return raw


class FieldReader:
    """Reads raw config values into typed ones; every error names the file and the dotted field.

    Architectures read their own fields with it (:class:`ssd.architectures.Architecture`).
    """

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

    # -- shared sections ------------------------------------------------------------------------
    def head(self, raw: dict[str, Any], boxes_per_location: tuple[int, ...]) -> HeadSpec:
        """The ``head`` section (default: a 3x3 loc and conf conv per map); ``boxes_per_location`` per map."""
        num_maps = len(boxes_per_location)
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



def _model_section(reader: FieldReader, raw: dict[str, Any]) -> ModelConfig:
    """The shared fields, then the architecture's own (:func:`ssd.architectures.get_architecture`)."""
    arch = raw.get("arch", DEFAULT_ARCH)
    if not isinstance(arch, str) or arch not in architectures.architecture_names():
        raise reader.error("model.arch", f"expected one of {architectures.architecture_names()}, got {arch!r}")
    if "image_size" not in raw:
        raise reader.error("model.image_size", "missing")
    image_size = reader.pair(raw["image_size"], "model.image_size", minimum=1)
    steps = tuple(reader.number(v, f"model.steps[{i}]") for i, v in enumerate(reader.sequence(raw, "steps", "model")))
    num_maps = len(steps)
    scales = tuple(reader.number(v, f"model.scales[{i}]") for i, v in enumerate(reader.sequence(raw, "scales", "model")))
    reader.expect_length(scales, num_maps + 1, "model.scales", f"one more than the {num_maps} maps of model.steps")
    ratios_raw = reader.sequence(raw, "aspect_ratios", "model")
    reader.expect_length(ratios_raw, num_maps, "model.aspect_ratios", f"one list per map, {num_maps} maps")
    aspect_ratios = []
    for k, ratios in enumerate(ratios_raw):
        if not isinstance(ratios, (list, tuple)):
            raise reader.error(f"model.aspect_ratios[{k}]", f"expected a list, got {ratios!r}")
        aspect_ratios.append(tuple(reader.number(a, f"model.aspect_ratios[{k}][{j}]") for j, a in enumerate(ratios)))
    shared = SharedModelFields(arch=arch, image_size=image_size, steps=steps, scales=scales, aspect_ratios=tuple(aspect_ratios))
    own = architectures.get_architecture(arch).read_config(reader, raw, shared)
    model = ModelConfig(**vars(shared), head=own.head, feature_sizes=own.feature_sizes, layers=own.layers)
    _check_stated_sizes(reader, raw, model)
    return model


def _check_stated_sizes(reader: FieldReader, raw: dict[str, Any], model: ModelConfig) -> None:
    stated = raw.get("feat_size")
    if stated is None:
        return
    if not isinstance(stated, (list, tuple)):
        raise reader.error("model.feat_size", f"expected a list of (height, width), got {stated!r}")
    stated_sizes = tuple(reader.pair(s, f"model.feat_size[{i}]", 1) for i, s in enumerate(stated))
    if stated_sizes != model.feature_sizes:
        raise reader.error(
            "model.feat_size",
            f"stated {list(stated_sizes)} but the layers give {list(model.feature_sizes)} for image_size {model.image_size}",
        )


def _dataset_section(reader: FieldReader, raw: dict[str, Any]) -> DatasetConfig:
    folders = raw.get("folders")
    if folders is None:  # older reference configs split scenarios into train/val lists
        folders = list(dict.fromkeys([*raw.get("train_folders", []), *raw.get("val_folders", [])]))
    cameras = raw.get("cameras", [])
    for key, values in (("folders", folders), ("cameras", cameras)):
        if not isinstance(values, (list, tuple)) or not all(isinstance(v, str) for v in values):
            raise reader.error(f"dataset.{key}", f"expected a list of names, got {values!r}")
    ignore = raw.get("ignore_classes")
    ignore_classes = None
    if ignore is not None:
        if not isinstance(ignore, (list, tuple)):
            raise reader.error("dataset.ignore_classes", f"expected a list of class ids, got {ignore!r}")
        ignore_classes = tuple(reader.integer(v, f"dataset.ignore_classes[{i}]") for i, v in enumerate(ignore))
    use_label_info = raw.get("use_label_info", True)
    if not isinstance(use_label_info, bool):
        raise reader.error("dataset.use_label_info", f"expected true or false, got {use_label_info!r}")
    return DatasetConfig(folders=tuple(folders), cameras=tuple(cameras), ignore_classes=ignore_classes, use_label_info=use_label_info)
