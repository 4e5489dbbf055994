"""Images made to crash a decoder: none may take the process down.

torchvision's PNG decoder dies (SIGSEGV) on any libpng error raised while it reads rows. The
generators below build each kind of such file with correct chunk structure, and the tests check,
in a process of their own so that a miss shows as a death rather than killing the suite, that every
one is a named unreadable image; that the valid PNGs of every colour type, depth and interlacing
pass the check and decode as Pillow decodes them; and that headers claiming huge sizes are refused
before anything is allocated. Both inflaters run everywhere (ISA-L where installed, zlib simulated
by swapping the module).
"""
from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from support import TinyFiles

import ssd.data.image_files as image_files
from ssd.cli.main import main
from ssd.data.dataset import read_image
from ssd.data.problems import CorruptImageError

pytestmark = pytest.mark.hostile("crashing images")

WIDTH, HEIGHT = 40, 30


def chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png(rows: bytes, *, width: int = WIDTH, height: int = HEIGHT, depth: int = 8, colour: int = 2, interlace: int = 0,
        idat: bytes | None = None, extra: bytes = b"") -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    body = chunk(b"IDAT", zlib.compress(rows)) if idat is None else idat
    return image_files.PNG_SIGNATURE + chunk(b"IHDR", header) + extra + body + chunk(b"IEND", b"")


def noise_rows(count: int, width: int = WIDTH, filter_type: int = 0, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return b"".join(bytes([filter_type]) + rng.integers(0, 256, width * 3, dtype=np.uint8).tobytes() for _ in range(count))


def hostile_pngs() -> dict[str, bytes]:
    """Each kind of PNG the decoder would die on (or return garbage for), by name."""
    full = noise_rows(HEIGHT)
    stream = zlib.compress(full)
    good_idat = chunk(b"IDAT", stream)
    return {
        "short image data": png(noise_rows(2)),
        "no image data at all": png(b""),
        "a filter type beyond 4": png(noise_rows(HEIGHT, filter_type=7)),
        "a filter type beyond 4 in the last row": png(noise_rows(HEIGHT - 1) + noise_rows(1, filter_type=200)),
        "a deflate stream that does not inflate": png(b"", idat=chunk(b"IDAT", b"\x78\x9c" + bytes(100))),
        "a deflate stream cut short": png(b"", idat=chunk(b"IDAT", stream[: len(stream) // 2])),
        "an image data CRC that fails": png(b"", idat=good_idat[:-4] + b"\0\0\0\0"),
        "the image data split, one part missing": png(b"", idat=chunk(b"IDAT", stream[:40])),
        "interlaced, short": png(noise_rows(3), interlace=1),
    }


def valid_pngs() -> dict[str, bytes]:
    """PNGs of every colour type, bit depth and interlacing, as Pillow writes them."""
    rng = np.random.default_rng(1)
    images = {
        "RGB": Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)),
        "RGBA": Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 4), dtype=np.uint8)),
        "L": Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH), dtype=np.uint8)),
        "LA": Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 2), dtype=np.uint8), "LA"),
        "P": Image.fromarray(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)).quantize(16),
        "1": Image.fromarray(rng.integers(0, 2, (HEIGHT, WIDTH), dtype=np.uint8) * 255).convert("1"),
        "I;16": Image.fromarray(rng.integers(0, 65536, (HEIGHT, WIDTH), dtype=np.uint16)),
    }
    files = {}
    for mode, image in images.items():
        for interlace in (False, True):
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", interlace=interlace)
            files[f"{mode}{' interlaced' if interlace else ''}"] = buffer.getvalue()
    files["extra image data after the rows"] = png(noise_rows(HEIGHT) + bytes(500))
    files["odd size, 1x1"] = png(noise_rows(1, width=1), width=1, height=1)
    return files


@pytest.fixture(params=["installed", "zlib"])
def inflater(request, monkeypatch) -> str:
    """The check with the inflater installed here (ISA-L) and with zlib, as on a machine without it."""
    if request.param == "zlib":
        monkeypatch.setattr(image_files, "inflate_library", zlib)
        monkeypatch.setattr(image_files, "INFLATE_ERRORS", (zlib.error,))
    return request.param


@pytest.mark.parametrize("name", list(hostile_pngs()))
def test_a_png_the_decoder_would_die_on_is_named(name: str, inflater: str, tmp_path: Path):
    path = tmp_path / "hostile.png"
    path.write_bytes(hostile_pngs()[name])
    with pytest.raises(CorruptImageError, match="a corrupt PNG: "):
        read_image(path)


@pytest.mark.parametrize("name", list(valid_pngs()))
def test_every_kind_of_valid_png_passes_and_decodes_as_pillow_does(name: str, inflater: str, tmp_path: Path):
    path = tmp_path / "valid.png"
    path.write_bytes(valid_pngs()[name])
    assert image_files.png_problem(path.read_bytes()) is None
    image = read_image(path)
    with Image.open(path) as reference:
        if reference.mode == "I;16":
            expected = np.repeat((np.asarray(reference, dtype=np.int64) >> 8).astype(np.uint8)[..., None], 3, axis=2)
            assert (np.abs(image.permute(1, 2, 0).numpy().astype(int) - expected) <= 1).all()  # torchvision rounds, not truncates
        else:
            assert torch.equal(image, torch.from_numpy(np.array(reference.convert("RGB"))).permute(2, 0, 1))


def test_no_hostile_png_takes_a_process_down(tmp_path: Path):
    """Every hostile file read in a process of its own: a miss in the check would die there with SIGSEGV."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    for k, data in enumerate(hostile_pngs().values()):
        (folder / f"{k}.png").write_bytes(data)
    script = ("import sys, pathlib\nfrom ssd.data.dataset import read_image\nfrom ssd.data.problems import CorruptImageError\n"
              "for path in sorted(pathlib.Path(sys.argv[1]).iterdir()):\n    try:\n        read_image(path)\n"
              "        print('decoded', path.name)\n    except CorruptImageError as exc:\n        print('refused', path.name)\n")
    done = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split().count("refused") == len(hostile_pngs())


@pytest.mark.parametrize(("fmt", "size"), [("PNG", (60000, 60000)), ("BMP", (20000, 20000)), ("PNG", (13377, 13378))])
def test_a_header_claiming_a_huge_image_is_refused_before_anything_is_allocated(fmt: str, size: tuple[int, int], tmp_path: Path):
    width, height = size
    if fmt == "PNG":
        data = png(b"", width=width, height=height, idat=chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    else:  # a BMP header: 24 bits per pixel, pixel data absent
        data = b"BM" + struct.pack("<IHHI", 54, 0, 0, 54) + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    path = tmp_path / f"huge.{fmt.lower()}"
    path.write_bytes(data)
    with pytest.raises(CorruptImageError, match=r"its header claims .*more than the 178,956,970 pixels an image may have here"):
        read_image(path)


def test_the_pixel_limit_at_its_bound():
    """Pillow's decompression-bomb limit, 2 x 89,478,485 pixels, for every format: at it, and one row over."""
    limit = image_files.MAX_PIXELS
    width = 13_377
    height = limit // width
    for rows, refused in ((height, False), (height + 1, True)):
        header = png(b"", width=width, height=rows, idat=chunk(b"IDAT", zlib.compress(b"\0" * 64)))
        assert (image_files.header_problem(header) is not None) is refused, (width * rows, limit)


def test_a_folder_with_a_hostile_png_is_predicted_with_it_named(tiny_files: TinyFiles, tmp_path: Path, caplog, capsys):
    from support import write_image
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "a.png", (60, 90))
    (folder / "b.png").write_bytes(hostile_pngs()["short image data"])
    argv = ["predict", "--config", str(tiny_files.config), "--pretrained-model", str(tiny_files.checkpoint), "--device", "cpu",
            "--input", str(folder), "--output", str(tmp_path / "out"), "--num-workers", "0"]
    assert main(argv) == 0
    assert "b.png" in caplog.text and "a corrupt PNG" in caplog.text and "skipped 1 unreadable" in capsys.readouterr().out
    assert main([*argv[:-6], "--input", str(folder / "b.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "b.png" in err[0] and "a corrupt PNG: its image data holds" in err[0], err
