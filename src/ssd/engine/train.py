"""One training epoch: move a batch, encode its targets on the device, forward, loss, step."""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ssd.amp import MixedPrecision
from ssd.errors import SSDError
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
    on_step=None,
) -> EpochStats:
    """Train for one pass over ``loader``; ``on_step(step_in_epoch, LossParts)`` is called per step.

    Raises :class:`NonFiniteLossError` naming the epoch and step when the loss is NaN or infinite.
    """
    model.train()
    totals = torch.zeros(3, device=device)
    images_seen = steps = 0
    start = time.perf_counter()
    progress = tqdm(loader, desc=f"epoch {epoch}", disable=not show_progress, dynamic_ncols=True, leave=True)
    for step, (images, targets) in enumerate(progress):
        images, boxes, labels = prepare_batch(images, targets, device, channels_last)
        offsets, anchor_labels = encoder.encode_batch(boxes, labels)
        with precision.autocast():
            locs, confs = model(images)
        parts = criterion(locs, confs, offsets, anchor_labels)
        if not torch.isfinite(parts.total):
            raise NonFiniteLossError(
                f"loss is {parts.total.item()} at epoch {epoch} step {step} "
                f"(localisation {parts.localisation.item()}, classification {parts.classification.item()})"
            )
        optimizer.zero_grad(set_to_none=True)
        precision.backward_and_step(parts.total, optimizer)
        scheduler.step()
        totals += torch.stack((parts.total.detach(), parts.localisation.detach(), parts.classification.detach()))
        images_seen += images.shape[0]
        steps += 1
        if on_step is not None:
            on_step(step, parts)
        if show_progress:
            elapsed = time.perf_counter() - start
            progress.set_postfix(
                loss=f"{parts.total.item():.3f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}",
                img_s=f"{images_seen / elapsed:.1f}", refresh=False,
            )
    loss, localisation, classification = (totals / max(steps, 1)).tolist()
    return EpochStats(loss, localisation, classification, images_seen, time.perf_counter() - start)
