"""What torchvision's image decoders leave to us: BMP and TIFF files, and EXIF orientation.

torchvision decodes JPEG, PNG, WebP and GIF; BMP and TIFF, common in industrial and automotive
capture, go through Pillow here with the same colour handling (RGB out, alpha dropped, palette and
CMYK converted, 16-bit samples scaled to 8 bits by their high byte, as torchvision scales 16-bit
PNGs). EXIF orientation (every portrait phone photo) is read from the file's header and applied with
tensor flips and transposes, the same way for every format; datasets do not apply it, since their
annotations refer to the stored pixel layout.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

from ssd.data.problems import CorruptImageError

PILLOW_SIGNATURES = (b"BM", b"II*\x00", b"MM\x00*")  # BMP, little- and big-endian TIFF
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
