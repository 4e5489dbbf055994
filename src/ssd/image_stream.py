"""Inputs prepared ahead of the detector: image files in loader worker processes, video frames in a thread.

Decoding a JPEG and resizing it to the model's size is work of the order of a small model's forward
pass, so for a folder of images ``ssd predict`` can run them in :class:`torch.utils.data.DataLoader`
workers (where there are cores to spare) while the main process runs the network; each item keeps the
decoded image too, for drawing.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from ssd.inference import InferenceError, prepare, to_image_tensor

T = TypeVar("T")


@dataclass
class LoadedImage:
    """One file: the image as displayed (uint8 ``[3, H, W]``), its network input and original size,
    or the reason it could not be read."""

    path: Path
    image: Tensor | None = None
    network_input: Tensor | None = None
    size: tuple[int, int] | None = None
    error: str | None = None


class _ImageFiles(Dataset):
    def __init__(self, paths: Sequence[Path], transform: Any, orient: bool):
        self.paths = list(paths)
        self.transform = transform
        self.orient = orient

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> LoadedImage:
        path = self.paths[index]
        try:
            image = to_image_tensor(path, self.orient)
        except InferenceError as exc:
            return LoadedImage(path, error=str(exc))
        network_input, size = prepare(image, self.transform)
        return LoadedImage(path, image, network_input, size)


def _one_thread(_: int) -> None:
    """Workers decode one image each at a time; torch's own threads there would only compete."""
    torch.set_num_threads(1)


def load_images(
    paths: Sequence[Path], transform: Any, batch_size: int, num_workers: int, orient: bool = True
) -> Iterator[list[LoadedImage]]:
    """``paths`` in batches of :class:`LoadedImage`, in order; ``num_workers`` 0 decodes in this
    process; ``orient``: apply EXIF orientation (not for a dataset's images)."""
    loader = DataLoader(
        _ImageFiles(paths, transform, orient), batch_size=batch_size, num_workers=num_workers, collate_fn=list,
        worker_init_fn=_one_thread if num_workers else None, prefetch_factor=2 if num_workers else None,
    )
    yield from loader


_DONE = object()


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """``items``, produced in a background thread up to ``depth`` ahead of the consumer (a video's
    decoding overlapping inference: FFmpeg releases the GIL). An exception in the producer is
    raised here; a consumer that stops early stops the producer."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        buffer.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            buffer.put(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            buffer.put(exc)

    thread = threading.Thread(target=produce, name="ssd-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item = buffer.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting to put
            try:
                buffer.get_nowait()
            except queue.Empty:
                thread.join(timeout=0.1)
