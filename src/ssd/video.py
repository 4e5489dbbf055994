"""Reading and writing videos with PyAV: RGB frames as ``[H, W, 3]`` uint8 arrays in, and out.

The reference's video script was broken; here decoding and encoding go through FFmpeg (PyAV),
frame by frame, so a long video never sits in memory. Any FFmpeg failure (a file that is not a
video, a corrupt stream, an encoder that rejects its settings) becomes a :class:`VideoError`
naming the file.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from ssd.errors import SSDError

DEFAULT_FPS = Fraction(30)
# encoder per output container; H.264 where the container takes it, MPEG-4 part 2 as the fallback
CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".avi": "mpeg4", ".webm": "libvpx-vp9"}
FALLBACK_CODEC = "mpeg4"


class VideoError(SSDError):
    """A video that cannot be read or written; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What a video stream holds: frame size in pixels, frame rate, and frame count (0 when unknown)."""

    width: int
    height: int
    fps: Fraction
    frames: int


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
        self.info = VideoInfo(
            width=self._stream.codec_context.width,
            height=self._stream.codec_context.height,
            fps=Fraction(rate) if rate else DEFAULT_FPS,
            frames=int(self._stream.frames or 0),
        )

    def __iter__(self) -> Iterator[np.ndarray]:
        try:
            for frame in self._container.decode(self._stream):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: cannot decode video: {exc}") from exc

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
    rescaled, not cropped). Use as a context manager: closing flushes the encoder.
    """

    def __init__(self, path: str | Path, width: int, height: int, fps: Fraction | int = DEFAULT_FPS, codec: str | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        codec = codec or CODECS.get(self.path.suffix.lower(), FALLBACK_CODEC)
        self.width, self.height = width - width % 2, height - height % 2
        if self.width < 2 or self.height < 2:
            raise VideoError(f"{self.path}: frame size {width}x{height} is too small to encode")
        try:
            self._container = av.open(str(self.path), mode="w")
            self._stream = self._container.add_stream(codec, rate=Fraction(fps).limit_denominator(100000))
        except (av.FFmpegError, ValueError) as exc:
            raise VideoError(f"{self.path}: cannot write video with codec {codec}: {exc}") from exc
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = "yuv420p"
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB ``[H, W, 3]`` uint8 frame (of the size given at construction, up to rounding)."""
        video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        video_frame = video_frame.reformat(width=self.width, height=self.height, format="yuv420p")
        video_frame.pts = self.frames
        try:
            self._container.mux(self._stream.encode(video_frame))
        except av.FFmpegError as exc:
            raise VideoError(f"{self.path}: cannot encode frame {self.frames}: {exc}") from exc
        self.frames += 1

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        try:
            self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, trace: TracebackType | None) -> None:
        self.close()
