"""Configs: YAML (or reference-style Python) files loaded into validated, typed dataclasses.

A config has a ``model`` section (image size, anchors, layer specs) and an optional ``dataset``
section (Cognata scenarios and cameras, ignored classes, label map mode). The keys are those of the
MLCommons reference configs, so a reference ``config/<name>.py`` file loads unchanged. Every check
happens at load time, once, and a failure raises :class:`ConfigError` naming the file and the field.

This module reads what every architecture shares (image size, steps, scales, aspect ratios); the
architecture named by ``model.arch`` (:mod:`ssd.architectures`) reads its own layer fields with a
:class:`FieldReader` and derives the feature-map sizes. A config may state them as ``feat_size``;
a stated size that disagrees is an error naming both.

The dataclasses of the model section and :class:`FieldReader` live in :mod:`ssd.config_fields`, below
the architecture table, so that the table and the architectures' readers need nothing of this module.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ssd import architectures
from ssd.config_fields import (  # noqa: F401 (the model section's types, read through this module too)
    ArchitectureFields, ConfigError, FieldReader, HeadSpec, ModelConfig, SharedModelFields,
)
from ssd.errors import parameter

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data; the repository's configs/ links here
DEFAULT_ARCH = "ssd"  # the reference's configs do not name their architecture


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
            raise ConfigError(f"{parameter('model')} {requested} but config {self.name!r} describes an {self.model.arch} model")


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
