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
from ssd.device import HostValues, images_to_device
from ssd.errors import SSDError
from ssd.heap_retention import StepHook, no_step_hook
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


def prepare_batch(images: torch.Tensor, targets: list[dict], device: torch.device, channels_last: bool) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
    """Images on the device (channels-last if asked) and per-image boxes/labels."""
    images = images_to_device(images, device, channels_last)
    boxes = [t["boxes"].to(device, non_blocking=True) for t in targets]
    labels = [t["labels"].to(device, non_blocking=True) for t in targets]
    return images, boxes, labels


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
    after_step: StepHook = no_step_hook,
) -> EpochStats:
    """Train for one pass over ``loader``.

    The step never waits for the device to finish its queue: the loss's gathered sizes are copied
    to the host while the forward pass runs (:class:`ssd.loss.LossTargets`), and each step's loss values are read one step later,
    when they are long computed. So a NaN or infinite loss raises :class:`NonFiniteLossError`
    (naming the epoch and the step) after the following step was queued; nothing is saved.
    The phases of a step are labelled for ``torch.profiler`` (``ssd.forward``, ``ssd.loss``...).
    ``after_step`` runs after every step (the CLI's :func:`ssd.heap_retention.heap_retention_for`:
    on the CPU, freed memory stays in the heap for the next step while that is affordable).
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
            loss_targets = encoder.encode_batch(boxes, labels)
        with record_function("ssd.forward"), precision.autocast():
            locs, confs = model(images)
        with record_function("ssd.loss"):
            parts = criterion(locs, confs, loss_targets)
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
        after_step()
    if pending is not None:
        check(*pending)
    loss, localisation, classification = (totals / max(step + 1, 1)).tolist()
    return EpochStats(loss, localisation, classification, images_seen, time.perf_counter() - start)
