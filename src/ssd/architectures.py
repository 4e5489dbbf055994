"""The table of detector architectures: each names its config fields, feature-map sizes and builder.

An :class:`Architecture` is everything the project needs to know of a network: ``read_config``
reads the architecture's own fields of a config's ``model`` section (with a
:class:`ssd.config.FieldReader`, so errors name the file and the field) and derives the prediction
maps' sizes; ``build`` makes the ``nn.Module`` whose ``forward(images [N, 3, H, W])`` returns
``(locs [N, 4, A], confs [N, C, A])`` with the anchors of :func:`ssd.anchors.default_boxes`.
``model.arch`` in a config, ``--model`` on the command line and the ``arch`` of a checkpoint name
an entry of this table. Adding a backbone is one module with an ``ARCHITECTURE`` and one
:func:`register_architecture` call (or an entry in :data:`BUILTIN`)::

    register_architecture(Architecture("tiny", read_config=read_tiny_config, build=TinySSD))

This module imports nothing heavy: built-in architectures are imported on first use.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ssd.errors import SSDError

if TYPE_CHECKING:
    from torch import nn

    from ssd.config_fields import ArchitectureFields, FieldReader, ModelConfig, SharedModelFields

# built-in architectures: name -> module defining ``ARCHITECTURE`` (imported when first asked for)
BUILTIN = {"ssd": "ssd.models.ssd_resnet", "ssdlite": "ssd.models.ssdlite"}


class UnknownArchitectureError(SSDError, ValueError):
    """An architecture name that is not in the table."""


@dataclass(frozen=True)
class Architecture:
    """One detector architecture.

    Attributes:
        name: the ``model.arch`` value that selects it.
        read_config: ``(reader, raw model section, shared fields) -> ArchitectureFields``: its own
            fields read and checked, the heads, and the (rows, columns) of every prediction map.
        build: ``(model config, num_classes incl. background, backbone weights or None) -> nn.Module``.
    """

    name: str
    read_config: Callable[[FieldReader, dict[str, Any], SharedModelFields], ArchitectureFields]
    build: Callable[[ModelConfig, int, str | Path | None], nn.Module]


_registered: dict[str, Architecture] = {}


def register_architecture(architecture: Architecture) -> None:
    """Add ``architecture`` to the table (replacing one of the same name)."""
    _registered[architecture.name] = architecture


def architecture_names() -> tuple[str, ...]:
    """Every architecture name, built-in first (the CLI's ``--model`` choices)."""
    return tuple(dict.fromkeys([*BUILTIN, *_registered]))


def get_architecture(name: str) -> Architecture:
    """The architecture called ``name``; raises :class:`UnknownArchitectureError` for any other name."""
    if name not in _registered and name in BUILTIN:
        register_architecture(importlib.import_module(BUILTIN[name]).ARCHITECTURE)
    if name not in _registered:
        raise UnknownArchitectureError(f"unknown architecture {name!r}: expected one of {', '.join(architecture_names())}")
    return _registered[name]
