"""Reading and writing videos with PyAV: RGB frames as ``[H, W, 3]`` uint8 arrays in, and out.

Decoding and encoding go through FFmpeg (PyAV), frame by frame, so a long video never sits in
memory. Any FFmpeg failure (a file that is not a video, a corrupt stream, an encoder that rejects
its settings) becomes a :class:`VideoError` naming the file.
"""
from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from ssd.atomic_file import as_fault_of, temporary_name
from ssd.errors import SSDError

DEFAULT_FPS = Fraction(30)
# encoder per output container; H.264 where the container takes it, MPEG-4 part 2 as the fallback
CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".avi": "mpeg4", ".webm": "libvpx-vp9"}
CONTAINERS = {".mp4": "mp4", ".mkv": "matroska", ".mov": "mov", ".avi": "avi", ".webm": "webm"}  # FFmpeg's muxer per suffix
FALLBACK_CODEC = "mpeg4"


class VideoError(SSDError):
    """A video that cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video stream holds: frame size in pixels as displayed (after its rotation), average
    frame rate, frame count (0 when unknown), the time base of its timestamps, and the clockwise
    turn in degrees its display matrix asks for."""

    width: int
    height: int
    fps: Fraction
    frames: int
    time_base: Fraction | None = None
    rotation: int = 0


@dataclass(frozen=True)
class Frame:
    """One decoded frame: RGB ``[H, W, 3]`` uint8 as displayed, its timestamp in the stream's time
    base (None when the stream has none) and in seconds."""

    pixels: np.ndarray
    pts: int | None
    time: float | None


def display_turn(rotation: float) -> int:
    """The clockwise turn (0, 90, 180 or 270 degrees) that displays a frame whose display matrix
    gives ``rotation`` (FFmpeg's ``av_display_rotation_get``, counterclockwise), as FFmpeg's
    autorotate does: ``-rotation``, rounded to a quarter turn."""
    return int(round(-rotation / 90.0)) % 4 * 90


def turn(pixels: np.ndarray, clockwise: int) -> np.ndarray:
    """``[H, W, C]`` pixels turned clockwise by 0, 90, 180 or 270 degrees."""
    return np.ascontiguousarray(np.rot90(pixels, k=-(clockwise // 90))) if clockwise else pixels


class VideoReader:
    """Decode the first video stream of a file, frame by frame, as RGB ``[H, W, 3]`` uint8 arrays.

    Use as a context manager (or call :meth:`close`); iterate to decode.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise VideoError(f"video not found: {self.path}")
        try:
            self._container = av.open(str(self.path), mode="r")
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: cannot read video: {exc}") from exc
        if not self._container.streams.video:
            self._container.close()
            raise VideoError(f"{self.path}: no video stream")
        self._stream = self._container.streams.video[0]
        self._stream.thread_type = "AUTO"
        rate = self._stream.average_rate or self._stream.guessed_rate
        width, height = self._stream.codec_context.width, self._stream.codec_context.height
        rotation = display_turn(self._first_rotation())
        self.info = VideoInfo(
            width=height if rotation in (90, 270) else width,
            height=width if rotation in (90, 270) else height,
            fps=Fraction(rate) if rate else DEFAULT_FPS,
            frames=int(self._stream.frames or 0),
            time_base=Fraction(self._stream.time_base) if self._stream.time_base else None,
            rotation=rotation,
        )

    def _first_rotation(self) -> float:
        """The display rotation of the stream, read from its first frame (kept for :meth:`frames`)."""
        self._decoded = self._container.decode(self._stream)
        try:
            self._first = next(self._decoded, None)
        except av.FFmpegError as exc:
            self._container.close()
            raise VideoError(f"{self.path}: cannot decode video: {exc}") from exc
        return float(self._first.rotation or 0) if self._first is not None else 0.0

    def frames(self) -> Iterator[Frame]:
        """The frames in presentation order, turned upright as the display matrix says, with
        timestamps. A reader decodes its file once."""
        if self._first is None:
            return
        first, self._first = self._first, None
        try:
            for frame in itertools.chain([first], self._decoded):
                pixels = turn(frame.to_ndarray(format="rgb24"), self.info.rotation)
                time = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
                yield Frame(pixels, frame.pts, time)
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: cannot decode video: {exc}") from exc

    def __iter__(self) -> Iterator[np.ndarray]:
        """The frames' pixels (see :meth:`frames`)."""
        return (frame.pixels for frame in self.frames())

    def close(self) -> None:
        """Release the file."""
        self._container.close()

    def __enter__(self) -> "VideoReader":
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None) -> None:
        self.close()


class VideoWriter:
    """Encode RGB ``[H, W, 3]`` uint8 frames into a video file at ``fps``.

    The codec follows the file suffix (:data:`CODECS`; H.264 for ``.mp4``). Encoders working in
    YUV 4:2:0 need even sizes, so an odd width or height is rounded down by one pixel (the frame is
    rescaled, not cropped). Use as a context manager: closing flushes the encoder. The file is written
    whole or not at all (:mod:`ssd.atomic_file`'s temporary name, renamed into place when the block
    ends without an exception), so a killed run never leaves half a video under the real name.
    """

    def __init__(
        self, path: str | Path, width: int, height: int, fps: Fraction | int = DEFAULT_FPS, codec: str | None = None,
        time_base: Fraction | None = None,
    ):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        codec = codec or CODECS.get(self.path.suffix.lower(), FALLBACK_CODEC)
        self.width, self.height = width - width % 2, height - height % 2
        if self.width < 2 or self.height < 2:
            raise VideoError(f"{self.path}: frame size {width}x{height} is too small to encode")
        self._temporary = temporary_name(self.path)
        try:
            self._container = av.open(str(self._temporary), mode="w", format=CONTAINERS.get(self.path.suffix.lower()))
            self._stream = self._container.add_stream(codec, rate=Fraction(fps).limit_denominator(100000))
        except (av.FFmpegError, ValueError) as exc:
            raise VideoError(f"{self.path}: cannot write video with codec {codec}: {exc}") from exc
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = "yuv420p"
        if time_base is not None:
            self._stream.time_base = self._stream.codec_context.time_base = time_base
        self.frames = 0
        self._last_pts: int | None = None

    def write(self, frame: np.ndarray, pts: int | None = None) -> None:
        """Append one RGB ``[H, W, 3]`` uint8 frame (of the size given at construction, up to rounding).

        ``pts``: its timestamp in the ``time_base`` given at construction (a source's, so variable
        frame rates keep their timing); None, or one not after the last, takes the next tick.
        """
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame = video_frame.reformat(width=self.width, height=self.height, format="yuv420p")
        if pts is None or (self._last_pts is not None and pts <= self._last_pts):
            pts = self.frames if self._last_pts is None else self._last_pts + 1
        video_frame.pts = self._last_pts = pts
        try:
            self._container.mux(self._stream.encode(video_frame))
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: cannot encode frame {self.frames}: {exc}") from exc
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        """Flush the encoder and finish the file; put it in place of :attr:`path` (``keep``), else remove it."""
        try:
            if keep:
                self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
        try:
            if keep:
                with as_fault_of(self.path, self._temporary):
                    os.replace(self._temporary, self.path)
        finally:
            self._temporary.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None) -> None:
        self.close(keep=kind is None)
