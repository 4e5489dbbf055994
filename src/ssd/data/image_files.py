"""What torchvision's image decoders leave to us: BMP and TIFF files, EXIF orientation, and the PNGs
its decoder would die on.

torchvision decodes JPEG, PNG, WebP and GIF; BMP and TIFF, common in industrial and automotive
capture, go through Pillow here with the same colour handling (RGB out, alpha dropped, palette and
CMYK converted, 16-bit samples scaled to 8 bits by their high byte, as torchvision scales 16-bit
PNGs). EXIF orientation (every portrait phone photo) is read from the file's header and applied with
tensor flips and transposes, the same way for every format; datasets do not apply it, since their
annotations refer to the stored pixel layout.

torchvision's PNG decoder kills the process (SIGSEGV, pytorch/vision#3613) on any libpng error raised
while it reads the rows: image data short of the rows the header promises, a row filter byte that is
not 0-4, a deflate stream that does not inflate, an IDAT chunk whose CRC is wrong; and it returns
garbage rows for a deflate stream cut short. :func:`png_problem` checks exactly those before the
decoder sees the file (chunk CRCs, the whole stream inflated and counted, every row's filter byte),
so such a file is a named unreadable image, never a dead run. Every image's header is checked against
:data:`MAX_PIXELS` first, before anything is allocated for it.
"""
from __future__ import annotations

import io
import struct
import warnings
import zlib

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ssd.data.problems import CorruptImageError

try:  # ISA-L, when installed, inflates faster than zlib; the check below inflates every PNG's whole stream once
    from isal import isal_zlib as inflate_library
    INFLATE_ERRORS: tuple[type[Exception], ...] = (zlib.error, inflate_library.error)
except ImportError:
    inflate_library = zlib  # type: ignore[assignment]
    INFLATE_ERRORS = (zlib.error,)

PILLOW_SIGNATURES = (b"BM", b"II*\x00", b"MM\x00*")  # BMP, little- and big-endian TIFF
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Pillow's decompression-bomb limit (179 M pixels, 21x an 8 MP frame), for every format alike: a header claiming more is refused
MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))  # x0, y0, dx, dy
ORIENTATION_TAG = 0x0112
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")
INVERSE_ORIENTATION = {6: 8, 8: 6}  # the turns by 90 degrees; every other orientation undoes itself


def needs_pillow(data: bytes) -> bool:
    """Whether ``data`` is a format torchvision cannot decode but Pillow can (BMP, TIFF)."""
    return data.startswith(PILLOW_SIGNATURES)


def decode_with_pillow(data: bytes) -> Tensor:
    """``data`` (BMP or TIFF) as uint8 RGB ``[3, H, W]`` in its stored layout; raises :class:`CorruptImageError`.

    Pillow turns a TIFF by its orientation tag as it loads it; that turn is undone here, so that
    every format comes back as stored and :func:`apply_orientation` alone decides.
    """
    try:
        with warnings.catch_warnings():  # a truncated file warns before it fails; the failure is reported
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                turned = image.tag_v2.get(ORIENTATION_TAG, 1) if image.format == "TIFF" else 1
                image.load()
                if image.mode in SIXTEEN_BIT_MODES:
                    pixels = (np.asarray(image, dtype=np.int64).clip(0, 65535) >> 8).astype(np.uint8)
                    pixels = np.repeat(pixels[..., None], 3, axis=2)
                elif image.mode == "F":
                    pixels = np.repeat(np.asarray(image).clip(0, 255).round().astype(np.uint8)[..., None], 3, axis=2)
                else:
                    pixels = np.array(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise CorruptImageError(f"cannot decode: {exc}") from exc
    decoded = torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).contiguous()
    return apply_orientation(decoded, INVERSE_ORIENTATION.get(turned, turned)) if turned in range(2, 9) else decoded


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation (1-8) in an image file's header; 1 when there is none or it is unreadable."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            value = image.getexif().get(ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a header Pillow cannot read has no orientation for us
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def apply_orientation(image: Tensor, orientation: int) -> Tensor:
    """``image [C, H, W]`` as displayed under EXIF ``orientation`` (what Pillow's ``exif_transpose`` gives)."""
    if orientation in (5, 6, 7, 8):
        image = image.transpose(-1, -2)
    flips = {2: (-1,), 3: (-1, -2), 4: (-2,), 6: (-1,), 7: (-1, -2), 8: (-2,)}.get(orientation)
    if flips:
        image = image.flip(flips)
    return image.contiguous()


def header_problem(data: bytes) -> str | None:
    """Why an image's header alone rules it out (a size beyond :data:`MAX_PIXELS`, which a decoder
    would try to allocate), or None; a header Pillow cannot read is left to the decoder to report."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
    except Image.DecompressionBombError:
        return f"its header claims more than the {MAX_PIXELS:,} pixels an image may have here (a decompression bomb?)"
    except Exception:  # noqa: BLE001 - not a header Pillow reads: the decoder names the problem
        return None
    if width * height > MAX_PIXELS:
        return f"its header claims {width}x{height} pixels, more than the {MAX_PIXELS:,} an image may have here (a decompression bomb?)"
    return None


def png_problem(data: bytes) -> str | None:
    """Why torchvision's PNG decoder would crash on, or return garbage for, ``data``; None when it can
    decode it (or would report the problem itself, as it does for errors in the header)."""
    if not data.startswith(PNG_SIGNATURE):
        return None
    position, header, inflater, rows, crc_errors = len(PNG_SIGNATURE), None, inflate_library.decompressobj(), bytearray(), 0
    while position + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, position)
        body = data[position + 8 : position + 8 + length]
        stored_crc = data[position + 8 + length : position + 12 + length]
        if len(body) < length or len(stored_crc) < 4:
            break  # cut short: what was read is checked below
        position += 12 + length
        if kind == b"IHDR" and length == 13:
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT" and header is not None:
            if zlib.crc32(body, zlib.crc32(kind)) != struct.unpack(">I", stored_crc)[0]:
                crc_errors += 1
            try:
                rows += inflater.decompress(body)
            except INFLATE_ERRORS as exc:
                return f"a corrupt PNG: its image data does not inflate ({exc})"
        elif kind == b"IEND":
            break
    if header is None:
        return None  # no readable IHDR: the decoder reports it before reading rows
    width, height, depth, colour, _, _, interlace = header
    if colour not in _CHANNELS or width == 0 or height == 0:
        return None  # the decoder refuses the header itself
    if crc_errors:
        return f"a corrupt PNG: {crc_errors} image data chunk{'s' if crc_errors > 1 else ''} fail{'' if crc_errors > 1 else 's'} its CRC check"
    bits = _CHANNELS[colour] * depth
    passes = [(width, height)] if interlace == 0 else [
        (-(-(width - x0) // dx) if width > x0 else 0, -(-(height - y0) // dy) if height > y0 else 0) for x0, y0, dx, dy in _ADAM7
    ]
    expected, filter_positions = 0, []
    for pass_width, pass_height in passes:
        if pass_width and pass_height:
            stride = 1 + -(-pass_width * bits // 8)
            filter_positions.append(np.arange(pass_height, dtype=np.int64) * stride + expected)
            expected += pass_height * stride
    if not inflater.eof:
        return f"a corrupt PNG: its image data stops short ({len(rows):,} of {expected:,} bytes, the stream unfinished)"
    if len(rows) < expected:
        return f"a corrupt PNG: its image data holds {len(rows):,} of the {expected:,} bytes its {width}x{height} header needs"
    filters = np.frombuffer(rows, np.uint8)[np.concatenate(filter_positions)]
    bad = np.flatnonzero(filters > 4)
    if len(bad):
        return f"a corrupt PNG: row {int(bad[0])} has filter type {int(filters[bad[0]])} (PNG's are 0 to 4)"
    return None
