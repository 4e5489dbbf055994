"""One training epoch: move a batch, encode its targets on the device, forward, loss, step."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.profiler import record_function
from torch.utils.data import DataLoader
from tqdm import tqdm

from ssd.amp import MixedPrecision
from ssd.errors import SSDError
from ssd.heap_retention import after_step_on
from ssd.loss import MultiBoxLoss
from ssd.matching import TargetEncoder


class NonFiniteLossError(SSDError):
    """The loss became NaN or infinite: the run stops rather than train on garbage."""


@dataclass
class EpochStats:
    loss: float
    localisation: float
    classification: float
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / max(self.seconds, 1e-9)


def images_to_device(images: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    """A batch on the device, in channels-last memory format if asked (as the model was converted)."""
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    return images.to(device, non_blocking=True).contiguous(memory_format=memory_format)


def prepare_batch(images: torch.Tensor, targets: list[dict], device: torch.device, channels_last: bool) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Images on the device (channels-last if asked) and per-image boxes/labels."""
    images = images_to_device(images, device, channels_last)
    boxes = [t["boxes"].to(device, non_blocking=True) for t in targets]
    labels = [t["labels"].to(device, non_blocking=True) for t in targets]
    return images, boxes, labels


class HostValues:
    """Device values copied to the host without blocking: :meth:`get` waits for that copy alone.

    On CUDA the copy goes to pinned memory behind an event, so reading it later does not drain
    the queue of kernels launched since (``.item()`` would). On the CPU it is the values themselves.
    """

    def __init__(self, values: torch.Tensor):
        self._event = None
        if values.device.type == "cuda":
            self._values = torch.empty(values.shape, dtype=values.dtype, pin_memory=True)
            self._values.copy_(values, non_blocking=True)
            self._event = torch.cuda.Event()
            self._event.record()
        else:
            self._values = values

    def get(self) -> list:
        if self._event is not None:
            self._event.synchronize()
        return self._values.tolist()


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    encoder: TargetEncoder,
    criterion: MultiBoxLoss,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    precision: MixedPrecision,
    device: torch.device,
    epoch: int,
    *,
    channels_last: bool = False,
    show_progress: bool = True,
) -> EpochStats:
    """Train for one pass over ``loader``.

    The step never waits for the device to finish its queue: the loss's gathered sizes are copied
    to the host while the forward pass runs, and each step's loss values are read one step later,
    when they are long computed. So a NaN or infinite loss raises :class:`NonFiniteLossError`
    (naming the epoch and the step) after the following step was queued; nothing is saved.
    The phases of a step are labelled for ``torch.profiler`` (``ssd.forward``, ``ssd.loss``...).
    On the CPU, freed memory stays in the heap for the next step while that is affordable
    (:mod:`ssd.heap_retention`).
    """
    model.train()
    totals = torch.zeros(3, device=device)
    images_seen = 0
    start = time.perf_counter()
    progress = tqdm(loader, desc=f"epoch {epoch}", disable=not show_progress, dynamic_ncols=True, leave=True)

    def check(step: int, losses: HostValues) -> None:
        """Stop on a non-finite loss; show the step's loss in the progress bar."""
        total, localisation, classification = losses.get()
        if not math.isfinite(total):
            raise NonFiniteLossError(
                f"loss is {total} at epoch {epoch} step {step} (localisation {localisation}, classification {classification})"
            )
        if show_progress:
            progress.set_postfix(
                loss=f"{total:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                img_s=f"{images_seen / (time.perf_counter() - start):.1f}", refresh=False,
            )

    pending = None
    step = -1
    for step, (images, targets) in enumerate(progress):
        with record_function("ssd.encode_targets"):
            images, boxes, labels = prepare_batch(images, targets, device, channels_last)
            offsets, anchor_labels = encoder.encode_batch(boxes, labels)
            sizes = HostValues(criterion.gathered_sizes(anchor_labels))
        with record_function("ssd.forward"), precision.autocast():
            locs, confs = model(images)
        with record_function("ssd.loss"):
            parts = criterion(locs, confs, offsets, anchor_labels, sizes=sizes.get())
        with record_function("ssd.backward_step"):
            optimizer.zero_grad(set_to_none=True)
            precision.backward_and_step(parts.total, optimizer)
            scheduler.step()
        losses = torch.stack((parts.total, parts.localisation, parts.classification)).detach()
        totals += losses
        images_seen += images.shape[0]
        if pending is not None:
            check(*pending)
        pending = step, HostValues(losses)
        after_step_on(device)
    if pending is not None:
        check(*pending)
    loss, localisation, classification = (totals / max(step + 1, 1)).tolist()
    return EpochStats(loss, localisation, classification, images_seen, time.perf_counter() - start)
