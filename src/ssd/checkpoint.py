"""The checkpoint format, in one place: what a training checkpoint holds, writing it, reading any.

A checkpoint is one ``torch.save``d dict of tensors and plain Python values, so it loads with
``torch.load(weights_only=True)``::

    model_state_dict   the weights (the reference's key, so the reference's tools read ours)
    optimizer, scheduler, scaler, epoch, rng    what resuming needs (rng: each rank's states)
    config             {"name", "source", "text"} of the config trained with
    arch, num_classes, class_names, label_map   what the weights mean (label_map: LabelMap.to_dict())
    map, best_map, options                      the epoch's mAP, the best so far, the run's options
    metrics_row        the epoch's metrics.csv row (restored on resume if a kill lost it)

Reading accepts ours, the reference's, torchvision-style ``{"model": ...}`` dicts and bare state
dicts, with keys prefixed ``module.`` by DistributedDataParallel; loading weights is strict and an
error names the file and the first key that does not fit. Files are written atomically: a process
killed at any moment leaves the previous file or the new one, never a truncated one.
"""
from __future__ import annotations

import io
import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from ssd.atomic_file import write_atomically
from ssd.config import Config, config_from_text, load_config
from ssd.errors import SSDError, parameter
from ssd.models import build_model_to_load

if TYPE_CHECKING:
    from ssd.data.dataset import DetectionDataset

logger = logging.getLogger(__name__)

MODEL_KEY = "model_state_dict"
# Where a checkpoint dict may keep the model's weights: torchvision-style, then ours and the reference's.
STATE_DICT_KEYS = ("model", MODEL_KEY)
DDP_PREFIX = "module."
# entries describing the model (the rest is weights and training state)
METADATA_KEYS = ("epoch", "arch", "num_classes", "class_names", "label_map", "config", "map")
LAST = "last.pth"
BEST = "best.pth"


class CheckpointError(SSDError):
    """A checkpoint that cannot be read or does not fit the model."""


# -- writing ----------------------------------------------------------------------------------------
def epoch_checkpoint_name(save_name: str, epoch: int) -> str:
    """The reference's per-epoch file name: ``{save_name}_ep{epoch}.pth`` (epoch counted from 0)."""
    return f"{save_name}_ep{epoch}.pth"


def config_record(config: Config) -> dict[str, str]:
    """The ``config`` entry: the config's name, where it was read from, and its text as it was loaded
    (the file may have been edited or removed since)."""
    return {"name": config.name, "source": str(config.source), "text": config.text}


def training_checkpoint(
    *,
    epoch: int,
    model: nn.Module,
    training_state: Mapping[str, Any],
    config: Config,
    class_names: list[str],
    label_map: Mapping[str, Any],
    mean_ap: float | None,
    best_map: float | None,
    options: Mapping[str, Any],
    metrics_row: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict a training run saves (the module docstring's layout).

    ``training_state``: ``optimizer``, ``scheduler``, ``scaler`` state dicts and ``rng`` (each rank's
    random states); ``label_map``: ``LabelMap.to_dict()``; ``options``: plain values.
    """
    return {
        "epoch": epoch,
        MODEL_KEY: model.state_dict(),
        **training_state,
        "config": config_record(config),
        "arch": config.model.arch,
        "num_classes": len(class_names),
        "class_names": list(class_names),
        "label_map": dict(label_map),
        "map": mean_ap,
        "best_map": best_map,
        "options": dict(options),
        "metrics_row": None if metrics_row is None else dict(metrics_row),
    }


def serialized(obj: Any) -> memoryview:
    """``torch.save``'s bytes of ``obj``, in memory: serialised before any file is opened (on a full
    disk ``torch.save`` to a file fails with a RuntimeError that hides the cause), and once for the
    several files an epoch writes."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getbuffer()


def atomic_save(obj: Any | memoryview, path: Path) -> None:
    """``obj`` (or its :func:`serialized` bytes) to ``path``, whole or not at all and on the disk when it
    returns (:func:`ssd.atomic_file.write_atomically`, durable): a failed write, such as on a full disk,
    leaves the previous file in place and names ``path``."""
    write_atomically(path, obj if isinstance(obj, memoryview) else serialized(obj), durable=True)


# -- reading ----------------------------------------------------------------------------------------
def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint file with ``weights_only=True``; a bare state dict comes back as is."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle with disallowed globals, not a torch file...
        raise CheckpointError(f"{path}: cannot read checkpoint: {_load_failure(exc)}") from exc
    if not isinstance(checkpoint, Mapping):
        raise CheckpointError(f"{path}: expected a dict, found {type(checkpoint).__name__}")
    return dict(checkpoint)


def _load_failure(exc: Exception) -> str:
    """The cause in ``torch.load``'s message, in one sentence: its message is paragraphs of advice
    (including to load untrusted files with ``weights_only=False``) around the reason."""
    message = str(exc)
    if "WeightsUnpickler error:" in message:
        message = message.split("WeightsUnpickler error:", 1)[1]
        message = re.split(r"Check the documentation|Please use", message)[0]
    message = " ".join(message.split())
    sentence = re.match(r".*?\.(\s|$)", message)
    return (sentence.group(0) if sentence else message).strip()


def extract_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Tensor]:
    """The model weights of a checkpoint dict (ours, the reference's, or bare), without ``module.``."""
    state = checkpoint
    for key in STATE_DICT_KEYS:
        if isinstance(checkpoint.get(key), Mapping):
            state = checkpoint[key]
            break
    return {(k[len(DDP_PREFIX):] if k.startswith(DDP_PREFIX) else k): v for k, v in state.items()}


def check_state_dict(model: nn.Module, state: Mapping[str, Any], source: str) -> None:
    """Raise :class:`CheckpointError` naming the first key whose presence or shape differs."""
    expected = model.state_dict()
    for key, tensor in expected.items():
        if key not in state:
            raise CheckpointError(f"{source}: missing key {key!r} (model expects shape {tuple(tensor.shape)})")
        found = state[key]
        if not isinstance(found, Tensor) or found.shape != tensor.shape:
            shape = tuple(found.shape) if isinstance(found, Tensor) else type(found).__name__
            raise CheckpointError(
                f"{source}: {key!r} has shape {shape} in the checkpoint but {tuple(tensor.shape)} in the model "
                "(another config or number of classes?)"
            )
    unexpected = [key for key in state if key not in expected]
    if unexpected:
        raise CheckpointError(f"{source}: unexpected key {unexpected[0]!r} ({len(unexpected)} in all): another model?")


def load_checkpoint(model: nn.Module, path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint's weights strictly into ``model`` and return the whole checkpoint dict.

    Accepts ours and the reference's (``{"model_state_dict": ...}``), torchvision-style ``{"model": ...}``,
    bare state dicts, and keys prefixed ``module.`` by DistributedDataParallel.
    """
    checkpoint = read_checkpoint(path, map_location)
    load_model_state(model, checkpoint, str(path))
    return checkpoint


def load_model_state(model: nn.Module, checkpoint: Mapping[str, Any], source: str) -> None:
    """Load the weights of an already read checkpoint dict strictly; errors name ``source``."""
    state = extract_state_dict(checkpoint)
    check_state_dict(model, state, source)
    model.load_state_dict(state, strict=True)


def num_classes_of(checkpoint: Mapping[str, Any], state: Mapping[str, Tensor], config: Config, requested: int | None, source: str) -> int:
    """Classes of a checkpoint: as requested, as recorded, or read off the first conf head's output channels."""
    recorded = checkpoint.get("num_classes")
    if requested is not None:
        if recorded is not None and int(recorded) != requested:
            raise CheckpointError(f"{source}: trained for {recorded} classes, {parameter('num_classes')} says {requested}")
        return requested
    if recorded is not None:
        return int(recorded)
    # reference checkpoints and bare state dicts: the last bias of conf.0 is the output conv's,
    # with num_defaults[0] x classes channels
    biases = [tensor for key, tensor in state.items() if key.startswith("conf.0.") and key.endswith("bias")]
    if not biases:
        raise CheckpointError(f"{source}: no conf.0 head to read the number of classes from; give {parameter('num_classes')}")
    channels, per_location = biases[-1].shape[0], config.model.head.num_defaults[0]
    if channels % per_location or channels // per_location < 2:
        raise CheckpointError(
            f"{source}: the first conf head has {channels} outputs, not a multiple of the {per_location} default boxes "
            f"of config {config.name!r} (another config?)"
        )
    return channels // per_location


OTHER_CONFIG_HINT = f"give the config it was trained with, or {parameter('allow_other_config')} to use it anyway"


def recorded_other_config(checkpoint: Mapping[str, Any], config: Config) -> str | None:
    """The name of the config the checkpoint records when it is another than ``config``, else None.

    A config counts as the same when its text is the recorded one, or when it has the recorded name
    and describes the same model (an edit of comments or of the dataset section changes nothing the
    weights depend on; an edit of the model section does, so the file edited since is another
    config). Checkpoints without a record (the reference's, bare state dicts) are not checked.
    """
    recorded = checkpoint.get("config")
    if not isinstance(recorded, Mapping) or recorded.get("name") is None:
        return None
    text = recorded.get("text")
    if text == config.text:
        return None
    if recorded["name"] != config.name:
        return str(recorded["name"])
    source = Path(str(recorded.get("source", config.source)))
    if source.suffix == ".py" or not isinstance(text, str):
        return None  # a Python config's recorded text is never run (a checkpoint is not trusted code): the name decides
    try:
        then = config_from_text(str(recorded["name"]), source, text)
    except SSDError:
        return None  # a record this version cannot read: the name is all there is to compare
    return None if then.model == config.model else f"{recorded['name']} (as recorded: the model section of the file has changed since)"


def check_config_matches(checkpoint: Mapping[str, Any], config: Config, source: str, hint: str = OTHER_CONFIG_HINT) -> None:
    """Raise :class:`CheckpointError` when the checkpoint records another config than ``config``
    (:func:`recorded_other_config`): weights of another config can have the same shapes (the same
    network at another image size, other anchors) and would then run without a shape error, giving
    wrong boxes."""
    other = recorded_other_config(checkpoint, config)
    if other is not None:
        raise CheckpointError(f"{source}: trained with config {other!r}, not {config.name!r} (same tensor shapes, other geometry); {hint}")


def load_model(
    path: str | Path,
    config: Config | str | Path,
    num_classes: int | None = None,
    device: str | torch.device = "cpu",
    *,
    allow_other_config: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """The network of ``config`` with a checkpoint's weights, in eval mode on ``device``, and the checkpoint.

    The number of classes is ``num_classes``, else the checkpoint's record, else read off the
    weights (reference checkpoints and bare state dicts). Raises :class:`CheckpointError` when the
    weights do not fit the config, or the checkpoint was trained with another config (unless
    ``allow_other_config``: :func:`check_config_matches`).
    """
    config = config if isinstance(config, Config) else load_config(config)
    checkpoint = read_checkpoint(path, map_location="cpu")
    state = extract_state_dict(checkpoint)
    classes = num_classes_of(checkpoint, state, config, num_classes, str(path))
    model = build_model_to_load(config, classes)
    check_state_dict(model, state, str(path))  # other shapes: the more telling error
    if not allow_other_config:
        check_config_matches(checkpoint, config, str(path))
    elif (other := recorded_other_config(checkpoint, config)) is not None:
        logger.warning("%s was trained with config %r, used here with %r (allow_other_config)", path, other, config.name)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval(), checkpoint


def check_dataset_fits(metadata: Mapping[str, Any], num_classes: int, dataset: DetectionDataset, source: str) -> None:
    """Raise :class:`CheckpointError` unless a model's classes are the dataset's labels.

    ``metadata``: the checkpoint (or :attr:`Detector.metadata`); its saved ``label_map``, when
    there is one, must be the dataset's.
    """
    if num_classes != dataset.num_classes:
        raise CheckpointError(f"{source}: the model has {num_classes} classes, the dataset {dataset.num_classes}")
    saved = metadata.get("label_map")
    if saved is not None and dict(saved) != dataset.label_map.to_dict():
        raise CheckpointError(f"{source}: the checkpoint's label map differs from the dataset's ({dataset.class_names})")
