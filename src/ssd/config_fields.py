"""The model section's types and the reader of config fields, below the architecture table.

:mod:`ssd.config` loads a config file; every architecture (:mod:`ssd.architectures`) reads its own
layer fields with a :class:`FieldReader`, whose errors name the file and the dotted field.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, NamedTuple

from ssd.errors import SSDError
from ssd.geometry import ConvSpec

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
