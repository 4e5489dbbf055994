"""Batches: collate with per-image targets, and the loader.

Batch layout: ``(images [N, 3, H, W], targets)`` with ``targets`` a list of the datasets' target
dicts. Anchor targets are encoded by the training loop on the training device, batched, not in the
loader's workers (docs/performance.md compares the two)::

    encoder = TargetEncoder(default_boxes(config).to(device))
    loss_targets = encoder.encode_batch([t["boxes"].to(device) for t in targets],
                                        [t["labels"].to(device) for t in targets])

Epochs: :class:`DetectionLoader` reshuffles every epoch (seeded with ``seed + epoch``, so a resumed
run sees the same order); call ``loader.set_epoch(epoch)`` at the start of each epoch so the order
follows the epoch number rather than the count of passes, and in distributed runs every rank agrees.

Augmentation: a training loader draws each item's random augmentation from its own seed, a function
of the run's seed, the epoch and the item's index (:class:`AugmentationSampler`), not from the
worker's running random stream. So an epoch's crops, flips and jitter are the same whatever the
number of workers, a run killed mid-epoch repeats the epoch exactly on resume, and ranks (which
load other indices) draw differently.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler, default_collate

from ssd.data.problems import Problem


def collate(batch: Sequence[tuple[Tensor | None, dict[str, Any]]]) -> tuple[Tensor | None, list[dict[str, Any]]]:
    """``[(image, target), ...]`` -> ``(images [N, 3, H, W], [target, ...])``.

    Items without an image (unreadable in evaluation, or an error in a worker: see
    :mod:`ssd.data.dataset`) are not stacked; their targets follow the others' (images None when
    no item has one), and :class:`DetectionLoader` takes them off. In a loader worker the stacked
    images are allocated in shared memory (``default_collate``), saving a copy per batch.
    """
    images = [image for image, _ in batch if image is not None]
    targets = [target for image, target in batch if image is not None] + [target for image, target in batch if image is None]
    return (default_collate(images) if images else None), targets


class DetectionLoader(DataLoader):
    """A ``DataLoader`` that sets its sampler's epoch and hands worker-found problems to the dataset.

    Every pass over the loader uses the epoch set by :meth:`set_epoch`, or else the previous pass's
    plus one. Targets' ``load_problems`` (images a worker could not decode and replaced) are removed
    from the batch and recorded on ``loader.dataset.problems``. Unreadable images that were not
    replaced are left out of the batch and listed in :attr:`unreadable` (this pass's); an error a
    worker returned is raised here, as it was raised there.

    Workers (persistent across passes) stop at :meth:`close`, which the loop that owns the loader calls
    however it ends, and which a pass that raises calls before its error leaves it. Left to the garbage
    collector (a loader in a reference cycle, such as one an error's traceback holds), each worker would
    stop only after a 5-second timeout: by then multiprocessing has closed the queue that tells it to.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.epoch = 0
        self.unreadable: list[Problem] = []

    def set_epoch(self, epoch: int) -> None:
        """Shuffle the next pass with ``seed + epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[Any]:
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        self.unreadable = []
        record = getattr(self.dataset, "record_load_problems", None)
        try:
            for images, targets in super().__iter__():
                kept = []
                for target in targets:
                    if "error" in target:
                        raise target["error"]
                    found = target.pop("load_problems", [])
                    if "unreadable" in target:
                        found.append(target["unreadable"])
                        self.unreadable.append(target["unreadable"])
                    else:
                        kept.append(target)
                    if found and record is not None:
                        record(found)
                if kept:
                    yield images, kept
        except Exception:
            self.close()
            raise

    def close(self) -> None:
        """Stop the workers now (a later pass starts new ones); a no-op without workers or once closed."""
        passes, self._iterator = self._iterator, None  # where DataLoader keeps its persistent workers
        stop = getattr(passes, "_shutdown_workers", None)  # torch's own shutdown, as garbage collection would call it
        if stop is not None:
            stop()


def item_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of item ``index`` in ``epoch`` of a run seeded ``seed`` (63 bits)."""
    return (((seed * 1_000_003) ^ epoch) * 1_000_003 ^ index) % (2**63)


class AugmentationSampler(DistributedSampler):
    """A ``DistributedSampler`` whose indices carry their augmentation seed: ``(index, item_seed)``."""

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in super().__iter__():
            yield index, item_seed(self.seed, self.epoch, index)


def build_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    train: bool,
    num_workers: int,
    distributed: bool = False,
    seed: int = 0,
    pin_memory: bool | None = None,
    prefetch_factor: int | None = None,
) -> DetectionLoader:
    """A loader over ``dataset`` for training (shuffled, last partial batch dropped) or evaluation.

    Args:
        batch_size: images per batch (per process when distributed).
        num_workers: loader processes; 0 loads in the calling process. Workers persist across epochs.
        distributed: split the data over the ranks of the initialised process group. For evaluation
            the sampler pads ranks to equal length by repeating images: de-duplicate by ``image_id``.
        seed: shuffling (the same on every rank) and, for training, each item's augmentation seed
            (:func:`item_seed`).
        pin_memory: default: when CUDA is available.
        prefetch_factor: batches each worker loads ahead (default 2).
    """
    sampler_type = AugmentationSampler if train else DistributedSampler
    if distributed:
        sampler = sampler_type(dataset, shuffle=train, seed=seed)
    else:
        sampler = sampler_type(dataset, num_replicas=1, rank=0, shuffle=train, seed=seed)
    return DetectionLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=train and len(sampler) >= batch_size,
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(seed),
    )
