"""Images as people have them: EXIF orientation, BMP and TIFF in every common mode, and ssd predict's outputs checked first."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps
from support import TinyFiles, model_flags, write_image

from ssd import Detector
from ssd.cli.main import main
from ssd import prediction
from ssd.cli.predict import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from ssd.data.dataset import read_image
from ssd.data.image_files import apply_orientation
from ssd.data.problems import CorruptImageError
from ssd.inference import to_image_tensor
from ssd.video import CODECS

RNG = np.random.default_rng(7)
PIXELS = RNG.integers(0, 256, (30, 44, 3), dtype=np.uint8)  # asymmetric: every turn and flip differs


def with_orientation(path: Path, orientation: int, image: Image.Image | None = None, **save) -> Path:
    exif = Image.Exif()
    exif[0x0112] = orientation
    (image or Image.fromarray(PIXELS)).save(path, exif=exif.tobytes(), **save)
    return path


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("suffix", [".png", ".webp", ".tiff", ".jpg"])
def test_exif_orientation_is_applied_for_prediction_only(tmp_path: Path, orientation: int, suffix: str):
    save = {"lossless": True} if suffix == ".webp" else {"quality": 100} if suffix == ".jpg" else {}
    path = with_orientation(tmp_path / f"photo{suffix}", orientation, **save)
    stored = read_image(path)  # a dataset's view: the stored layout its annotations refer to
    assert tuple(stored.shape) == (3, 30, 44)
    if suffix != ".jpg":  # lossless: the exact pixels
        assert np.array_equal(stored.permute(1, 2, 0).numpy(), PIXELS)
    shown = to_image_tensor(path)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))  # Pillow, the field's reference
    if suffix == ".jpg":  # Pillow's and torchvision's JPEG decoders may differ by a level; the geometry may not
        assert shown.shape[1:] == expected.shape[:2]
        assert torch.equal(shown, apply_orientation(stored, orientation))
    else:
        assert np.array_equal(shown.permute(1, 2, 0).numpy(), expected)


def test_detections_of_a_rotated_photo_are_in_the_displayed_frame(tiny_files: TinyFiles, tmp_path: Path):
    upright = write_image(tmp_path / "upright.png", (60, 40), seed=3)  # as displayed: 60 high, 40 wide
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # stored turned left; EXIF 6 turns it back (90 clockwise)
    path = with_orientation(tmp_path / "phone.png", 6, Image.fromarray(stored))
    detector = Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config, device="cpu", score_threshold=0.01)
    (from_file,), (from_pixels,) = detector([path]), detector([upright])
    assert tuple(to_image_tensor(path).shape) == (3, 60, 40) and len(from_pixels["boxes"]) > 0
    assert torch.equal(from_file["boxes"], from_pixels["boxes"]) and torch.equal(from_file["labels"], from_pixels["labels"])


def pillow_rgb(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


GREY16 = (RNG.integers(0, 65536, (30, 44))).astype(np.uint16)
CASES = {
    "rgb": (Image.fromarray(PIXELS), PIXELS),
    "grey": (Image.fromarray(PIXELS[..., 0]), np.repeat(PIXELS[..., :1], 3, axis=2)),
    "palette": (Image.fromarray(PIXELS).quantize(16), None),
    "rgba": (Image.fromarray(np.dstack([PIXELS, PIXELS[..., :1]])), PIXELS),  # alpha dropped, as torchvision's RGB mode
    "bilevel": (Image.fromarray(PIXELS[..., 0] > 127), np.repeat(((PIXELS[..., :1] > 127) * 255).astype(np.uint8), 3, axis=2)),
}
TIFF_ONLY = {
    "cmyk": (Image.fromarray(PIXELS).convert("CMYK"), None),
    "grey16": (Image.fromarray(GREY16), np.repeat((GREY16 >> 8).astype(np.uint8)[..., None], 3, axis=2)),  # the high byte
    "float": (Image.fromarray(PIXELS[..., 0].astype(np.float32) + 0.25), np.repeat(PIXELS[..., :1], 3, axis=2)),
}


@pytest.mark.parametrize(("suffix", "mode"), [(".bmp", m) for m in CASES] + [(".tiff", m) for m in [*CASES, *TIFF_ONLY]]
                         + [(".tif", "rgb")])
def test_bmp_and_tiff_decode_in_every_mode(tmp_path: Path, suffix: str, mode: str):
    image, expected = {**CASES, **TIFF_ONLY}[mode]
    path = tmp_path / f"{mode}{suffix}"
    image.save(path, **({"compression": "tiff_lzw"} if suffix != ".bmp" and mode != "float" else {}))
    decoded = read_image(path)
    assert decoded.dtype == torch.uint8 and tuple(decoded.shape) == (3, 30, 44)
    want = expected if expected is not None else pillow_rgb(Image.open(path))
    assert np.array_equal(decoded.permute(1, 2, 0).numpy(), want)


def test_a_truncated_tiff_is_a_corrupt_image(tmp_path: Path):
    path = tmp_path / "cut.tiff"
    Image.fromarray(PIXELS).save(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CorruptImageError, match="cannot decode"):
        read_image(path)


def test_the_written_video_suffixes_are_the_encoders():
    assert set(VIDEO_SUFFIXES) == set(CODECS)
    assert (IMAGE_SUFFIXES, VIDEO_SUFFIXES) == (prediction.IMAGE_SUFFIXES, prediction.VIDEO_SUFFIXES)  # the CLI's light copy


@pytest.mark.parametrize("case", ["image suffix", "no suffix", "image to folder", "video suffix", "folder to file", "folder to existing file"])
def test_output_paths_are_checked_before_any_work(tiny_files: TinyFiles, tmp_path: Path, capsys, case: str):
    write_image(tmp_path / "rgb.png", (40, 60))
    (tmp_path / "many").mkdir()
    write_image(tmp_path / "many" / "a.png", (40, 60))
    (tmp_path / "clip.mp4").write_bytes(b"not read: the output is checked first")
    (tmp_path / "taken").write_text("x")
    (tmp_path / "folder").mkdir()
    source, output, expected = {
        "image suffix": ("rgb.png", "out.d", "cannot write an image as .d; use .jpg, .jpeg, .png"),
        "no suffix": ("rgb.png", "out", "as a file without a suffix"),
        "image to folder": ("rgb.png", "folder", "is a folder; name the image file"),
        "video suffix": ("clip.mp4", "out.gif", "cannot write a video as .gif; use .mp4, .mkv"),
        "folder to file": ("many", "out.jpg", "several images write a folder of images and detections.json, not one .jpg file"),
        "folder to existing file": ("many", "taken", "exists and is not a folder"),
    }[case]
    flags = [*model_flags(tiny_files), "--input", str(tmp_path / source), "--output", str(tmp_path / output)]
    flags[flags.index("--pretrained-model") + 1] = str(tmp_path / "not_loaded.pth")  # the output error comes first
    assert main(["predict", *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --output {tmp_path / output}") and expected in err[0], err


def test_images_whose_names_differ_only_in_suffix_get_outputs_of_their_own(tiny_files: TinyFiles, tmp_path: Path):
    folder = tmp_path / "shots"
    folder.mkdir()
    write_image(folder / "a.png", (40, 60), seed=1)
    Image.fromarray(write_image(folder / "b.png", (40, 60), seed=2)).save(folder / "a.bmp")
    write_image(folder / "c.png", (40, 60), seed=3)
    assert main(["predict", *model_flags(tiny_files), "--input", str(folder), "--output", str(tmp_path / "out")]) == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.bmp.jpg", "a.png.jpg", "b.jpg", "c.jpg", "detections.json", "detections.jsonl"]
    records = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert len({r["output"] for r in records}) == 4 and all(Path(r["output"]).is_file() for r in records)
    assert set(IMAGE_SUFFIXES) >= {".bmp", ".tif", ".tiff"}


def test_predict_on_a_dataset_reads_its_images_as_stored(tiny_files: TinyFiles, tmp_path: Path):
    """A dataset image with an EXIF turn is predicted in the layout its annotations (and ssd evaluate) use."""
    import shutil

    from ssd.config import load_config
    from ssd.data import build_dataset

    data = Path(shutil.copytree(tiny_files.data, tmp_path / "data"))
    val = build_dataset("cognata", data, "val", load_config(tiny_files.config))
    victim = val.image_path(0)
    with_orientation(victim, 6, Image.open(victim).copy())  # the same stored pixels, now tagged "turn 90"
    height, width = val.orig_size(0)
    assert height != width and tuple(to_image_tensor(victim).shape[1:]) == (width, height)  # as given to predict: turned
    output = tmp_path / "drawn"
    assert main(["predict", *model_flags(tiny_files), "--dataset", "cognata", "--data-path", str(data), "--output", str(output)]) == 0
    records = {Path(r["image"]).name: r for r in json.loads((output / "detections.json").read_text())}
    assert (records[victim.name]["height"], records[victim.name]["width"]) == (height, width)
    detector = Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config, device="cpu", score_threshold=0.3, max_detections=100)
    (expected,) = detector([read_image(victim)])  # the stored layout, as the loaders read it
    assert [d["box"] for d in records[victim.name]["detections"]] == [[round(v, 2) for v in box] for box in expected["boxes"].tolist()]
