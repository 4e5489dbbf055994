"""Training: one step (:class:`TrainingStep`: encode the targets on the device, forward, loss,
backward, optimiser step), which the epoch loop and the benchmarks call, and one epoch of steps."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

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


@dataclass
class TrainingStep:
    """One optimisation step of ``network`` (the model, or its DDP or compiled wrapper) on a batch:
    targets encoded on the device, forward under ``precision``'s autocast, loss, backward (through the
    fp16 gradient scaler), optimiser step, then ``scheduler`` (if any) steps. Phases are labelled for
    ``torch.profiler`` (``ssd.forward``, ``ssd.loss``...)."""

    network: nn.Module
    encoder: TargetEncoder
    optimizer: torch.optim.Optimizer
    precision: MixedPrecision
    device: torch.device
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    criterion: MultiBoxLoss = field(default_factory=MultiBoxLoss)
    channels_last: bool = False

    def __call__(self, images: torch.Tensor, targets: list[dict]) -> torch.Tensor:
        """Step on ``images [N, 3, H, W]`` (host or device) with per-image ``boxes``/``labels``; returns
        ``[3]`` (total, localisation, classification) losses on the device, detached, not waited for."""
        with record_function("ssd.encode_targets"):
            images, boxes, labels = prepare_batch(images, targets, self.device, self.channels_last)
            loss_targets = self.encoder.encode_batch(boxes, labels)
        with record_function("ssd.forward"), self.precision.autocast():
            locs, confs = self.network(images)
        with record_function("ssd.loss"):
            parts = self.criterion(locs, confs, loss_targets)
        with record_function("ssd.backward_step"):
            self.optimizer.zero_grad(set_to_none=True)
            self.precision.backward_and_step(parts.total, self.optimizer)
            if self.scheduler is not None:
                self.scheduler.step()
        return torch.stack((parts.total, parts.localisation, parts.classification)).detach()


def train_one_epoch(
    step: TrainingStep,
    loader: DataLoader,
    epoch: int,
    *,
    show_progress: bool = True,
    after_step: StepHook = no_step_hook,
) -> EpochStats:
    """Train for one pass over ``loader``, a :class:`TrainingStep` per batch.

    The step never waits for the device to finish its queue: the loss's gathered sizes are copied
    to the host while the forward pass runs (:class:`ssd.loss.LossTargets`), and each step's loss values are read one step later,
    when they are long computed. So a NaN or infinite loss raises :class:`NonFiniteLossError`
    (naming the epoch and the step) after the following step was queued; nothing is saved.
    ``after_step`` runs after every step (the caller's memory policy, e.g.
    :func:`ssd.heap_retention.heap_retention_for`).
    """
    step.network.train()
    optimizer = step.optimizer
    totals = torch.zeros(3, device=step.device)
    images_seen = 0
    start = time.perf_counter()
    progress = tqdm(loader, desc=f"epoch {epoch}", disable=not show_progress, dynamic_ncols=True, leave=True)

    def check(index: int, losses: HostValues) -> None:
        """Stop on a non-finite loss; show the step's loss in the progress bar."""
        total, localisation, classification = losses.get()
        if not math.isfinite(total):
            raise NonFiniteLossError(
                f"loss is {total} at epoch {epoch} step {index} (localisation {localisation}, classification {classification})"
            )
        if show_progress:
            progress.set_postfix(
                loss=f"{total:.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                img_s=f"{images_seen / (time.perf_counter() - start):.1f}", refresh=False,
            )

    pending = None
    index = -1
    for index, (images, targets) in enumerate(progress):
        losses = step(images, targets)
        totals += losses
        images_seen += images.shape[0]
        if pending is not None:
            check(*pending)
        pending = index, HostValues(losses)
        after_step()
    if pending is not None:
        check(*pending)
    loss, localisation, classification = (totals / max(index + 1, 1)).tolist()
    return EpochStats(loss, localisation, classification, images_seen, time.perf_counter() - start)
