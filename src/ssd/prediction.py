"""Drawing a detector's detections on many images or a video, from Python as from ``ssd predict``.

:func:`predict_images` decodes and preprocesses images in loader workers ahead of the network and
draws and saves them in a thread behind it, appending each finished image's record to a JSONL log
(``resume`` skips the images it holds); :func:`predict_video` decodes in a thread ahead, draws
frame by frame with the source's timestamps, and logs each frame. Both logs start with the run's
identity (:func:`run_identity`), so a resumed run continues only the same run. Outputs are written
atomically; the caller chooses and checks their names.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ssd.atomic_file import write_atomically
from ssd.errors import SSDError, parameter
from ssd.image_stream import load_images, prefetch
from ssd.inference import Detector, detection_records, detections_of_records, to_image_tensor
from ssd.prediction_log import PredictionLog, finished_video_frames, header_line
from ssd.run_record import file_digest, text_digest
from ssd.visualize import draw_detections

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")  # read, and written (Pillow)
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")  # the containers of ssd.video.CODECS (written)
T = TypeVar("T")


@dataclass(frozen=True)
class Drawing:
    """How detections are drawn: box line width and label font size in pixels (None: by image size)."""

    thickness: int = 2
    font_size: int | None = None

    def __call__(self, image: Tensor, result: dict[str, Any], class_names: Sequence[str]) -> np.ndarray:
        """``image [3, H, W]`` uint8 with ``result``'s detections drawn, as an ``[H, W, 3]`` array."""
        drawn = draw_detections(image, result["boxes"], result["labels"], result["scores"], class_names,
                                thickness=self.thickness, font_size=self.font_size)
        return drawn.permute(1, 2, 0).numpy()


@dataclass(frozen=True)
class ImagesOutcome:
    """What :func:`predict_images` wrote: images with detections (``resumed`` of them from the log), unreadable ones skipped."""

    written: int
    resumed: int
    skipped: int


@dataclass(frozen=True)
class VideoOutcome:
    """What :func:`predict_video` wrote: frames (``resumed`` of them from the log), in ``seconds``."""

    frames: int
    resumed: int
    seconds: float


def run_identity(detector: Detector, model_file: Path, drawing: Drawing, video: Path | None = None) -> dict[str, Any]:
    """What produces a prediction's outputs, kept in its log so that a resumed run continues only the
    same run: the model's and config's SHA-256, engine, precision, decoding and drawing, the video's SHA-256."""
    settings = detector.settings
    run = {
        "model_sha256": file_digest(model_file), "config_sha256": text_digest(detector.config.text), "engine": detector.engine,
        "precision": detector.precision, "decode": [settings.score_threshold, settings.nms_threshold, settings.max_detections],
        "drawing": [drawing.thickness, drawing.font_size],
    }
    if video is not None:
        run["video_sha256"] = file_digest(video)
    return run


def folder_images(folder: Path) -> tuple[list[Path], list[str]]:
    """The images of a folder, by name, and what is left out and why (hidden entries aside): a file of
    another kind, a subfolder, a broken link."""
    images, passed_over = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
            images.append(entry)
        elif entry.is_symlink() and not entry.exists():
            passed_over.append(f"{entry.name} (a broken link)")
        elif entry.is_dir():
            passed_over.append(f"{entry.name} (a folder)")
        else:
            passed_over.append(f"{entry.name} (not one of {', '.join(IMAGE_SUFFIXES)})")
    return images, passed_over


def output_names(images: Sequence[Path], folder: Path) -> list[Path]:
    """``folder/<stem>.jpg`` per image; ``<name>.jpg`` (suffix kept) for images whose stems collide
    (a.png and a.jpg), so no output overwrites another."""
    stems = Counter(p.stem for p in images)
    return [folder / (f"{p.stem}.jpg" if stems[p.stem] == 1 else f"{p.name}.jpg") for p in images]


def log_paths(json_path: Path) -> list[Path]:
    """The detections files of a run writing ``json_path``: it, and the ``.jsonl`` written as results come."""
    return [json_path, json_path.with_suffix(".jsonl")]


def default_workers() -> int:
    """Loader workers for many images: 2, or none with 2 cores or fewer, where they only take cores
    from the network's threads (docs/performance.md)."""
    return 2 if len(os.sched_getaffinity(0)) > 2 else 0


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def encode_image(pixels: np.ndarray, target: Path) -> bytes:
    """``[H, W, 3]`` uint8 pixels in the format of ``target``'s suffix."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=Image.registered_extensions()[target.suffix.lower()], quality=95)
    return buffer.getvalue()


def save_prediction(source: Path, target: Path, image: Tensor, result: dict[str, Any], class_names: Sequence[str],
                    drawing: Drawing) -> dict[str, Any]:
    """Write ``image`` with ``result`` drawn to ``target`` (atomically) and return its JSON record."""
    write_atomically(target, encode_image(drawing(image, result, class_names), target))
    return {"image": str(source), "output": str(target), "height": int(image.shape[1]), "width": int(image.shape[2]),
            "detections": detection_records(result)}


def predict_image(detector: Detector, source: Path, target: Path, json_path: Path, drawing: Drawing, *, orient: bool = True) -> None:
    """One image: ``target`` with the detections drawn, its record in ``json_path``; an unreadable file is an error."""
    image = to_image_tensor(source, orient)
    (result,) = detector([image])
    record = save_prediction(source, target, image, result, detector.class_names, drawing)
    write_atomically(json_path, json.dumps(record, indent=1).encode())


def predict_images(
    detector: Detector, jobs: Sequence[tuple[Path, Path]], json_path: Path, drawing: Drawing, run: dict[str, Any], *,
    resume: bool = False, num_workers: int = 0, orient: bool = True,
) -> ImagesOutcome:
    """Draw detections on each (input, output) image pair; every record in ``json_path``, in ``jobs``' order.

    ``run``: the run's identity (:func:`run_identity`), the log's header. ``orient``: apply EXIF
    orientation (images given to predict on; a dataset's are read as stored, as its annotations are).
    An unreadable image is logged and skipped; none readable at all is an error.
    """
    log = PredictionLog(json_path.with_suffix(".jsonl"), resume=resume, run=run)
    targets = dict(jobs)
    todo = [source for source, _ in jobs if str(source) not in log.finished]
    records = dict(log.finished)
    skipped = 0

    def finish(source: Path, image: Tensor, result: dict[str, Any]) -> None:  # in the writer thread
        record = save_prediction(source, targets[source], image, result, detector.class_names, drawing)
        log.append(record)
        records[str(source)] = record

    progress = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="predicting", unit="image", dynamic_ncols=True)
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = []
        for batch in load_images(todo, detector.transform, detector.batch_size, num_workers, orient):
            for item in batch:
                if item.error is not None:
                    logger.warning("skipped: %s", item.error)
                    skipped += 1
            ready = [item for item in batch if item.error is None]
            if ready:
                results = detector.detect(torch.stack([item.network_input for item in ready]), [item.size for item in ready])
                pending += [writer.submit(finish, item.path, item.image, result) for item, result in zip(ready, results)]
            while len(pending) > 2 * detector.batch_size:  # the writer is behind: wait rather than hold every image
                pending.pop(0).result()
            for future in [future for future in pending if future.done()]:
                future.result()  # a failed write stops the run here
            pending = [future for future in pending if not future.done()]
            progress.update(len(batch))
        for future in pending:
            future.result()
    progress.close()
    log.close()
    if not records:
        raise SSDError(f"none of the {len(jobs)} images could be read")
    ordered = [records[str(source)] for source, _ in jobs if str(source) in records]
    write_atomically(json_path, json.dumps(ordered, indent=1).encode())
    return ImagesOutcome(len(ordered), len(jobs) - len(todo), skipped)


def predict_video(detector: Detector, source: Path, output: Path, drawing: Drawing, run: dict[str, Any], *,
                  resume: bool = False) -> VideoOutcome:
    """Decode (in a thread, ahead), detect, draw and encode frame by frame, keeping the source's
    timestamps and turning rotated frames upright; detections go to ``<output>.jsonl`` as they come
    (a line per frame, with its time) and to ``<output>.json`` at the end. Audio is not copied.

    ``resume``: the frames an interrupted run logged in ``<output>.jsonl`` are drawn from their logged
    detections instead of running the network again (the video itself is encoded anew: a killed
    MP4 cannot be continued); a log whose timestamps are not this video's is refused."""
    from ssd.video import VideoReader, VideoWriter

    frames: list[dict[str, Any]] = []
    lines = output.with_suffix(".jsonl")
    finished = finished_video_frames(lines, run) if resume else []
    with VideoReader(source) as reader:
        info = reader.info
        start = time.perf_counter()
        write_atomically(lines, (header_line(run) + "".join(json.dumps(record) + "\n" for record in finished)).encode())  # a cut line goes
        with VideoWriter(output, info.width, info.height, info.fps, time_base=info.time_base) as writer, \
                lines.open("a", encoding="utf-8") as log, contextlib.closing(prefetch(reader.frames(), 2 * detector.batch_size)) as decoded, \
                tqdm(total=info.frames or None, desc="predicting", unit="frame", dynamic_ncols=True) as progress:  # its line ends on errors too
            for chunk in chunks(decoded, detector.batch_size):
                images = [torch.from_numpy(frame.pixels).permute(2, 0, 1) for frame in chunk]
                reused = finished[len(frames):len(frames) + len(chunk)]
                for offset, (record, frame) in enumerate(zip(reused, chunk)):
                    if record.get("pts") != frame.pts:
                        raise SSDError(f"{parameter('resume')}: {lines} logs frame {len(frames) + offset} at pts {record.get('pts')}, "
                                       f"{source} has it at {frame.pts}: the log is of another video; predict again without resuming")
                results = [detections_of_records(record["detections"]) for record in reused]
                if len(reused) < len(chunk):
                    results += detector(images[len(reused):])
                for offset, (frame, image, result) in enumerate(zip(chunk, images, results)):
                    writer.write(drawing(image, result, detector.class_names), frame.pts)
                    if offset < len(reused):
                        record = reused[offset]
                    else:
                        record = {"frame": len(frames), "time": frame.time, "pts": frame.pts, "detections": detection_records(result)}
                        log.write(json.dumps(record) + "\n")
                    frames.append(record)
                log.flush()
                progress.update(len(chunk))
        elapsed = time.perf_counter() - start
    if not frames:
        raise SSDError(f"{source}: no frame could be decoded")
    if len(finished) > len(frames):
        raise SSDError(f"{parameter('resume')}: {lines} logs {len(finished)} frames, {source} has {len(frames)}: the log is of another "
                       "video; predict again without resuming")
    summary = {"video": str(source), "output": str(output), "fps": float(info.fps), "rotation": info.rotation, "frames": frames}
    write_atomically(output.with_suffix(".json"), json.dumps(summary, indent=1).encode())
    return VideoOutcome(len(frames), len(finished), elapsed)
