"""No command writes over one of its inputs, and a folder of outputs is held by one run at a time."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from support import TinyFiles, write_image

from ssd.cli.main import main


def _predict(files: TinyFiles, *flags: str) -> list[str]:
    return ["predict", "--config", str(files.config), "--pretrained-model", str(files.checkpoint), "--device", "cpu", *flags]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for k, name in enumerate(("a.jpg", "b.png")):
        write_image(folder / name, (72, 120), seed=k)
    return folder


def _one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "predicting" not in line]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.hostile("inputs overwritten, outputs raced")
def test_a_drawn_copy_never_replaces_its_input(tiny_files: TinyFiles, images: Path, tmp_path: Path, capsys):
    before = _snapshot(images)
    (tmp_path / "linked.jpg").symlink_to(images / "a.jpg")
    os.link(images / "a.jpg", tmp_path / "hard.jpg")
    cases = [
        (["--input", str(images), "--output", str(images)], "is the folder the input images are read from"),
        (["--input", str(images), "--output", str(images / ".." / "images")], "is the folder the input images are read from"),
        (["--input", str(images / "a.jpg"), "--output", str(images / "a.jpg")], "would write over the input"),
        (["--input", str(images / "a.jpg"), "--output", str(tmp_path / "linked.jpg")], "would write over the input"),
        (["--input", str(images / "a.jpg"), "--output", str(tmp_path / "hard.jpg")], "would write over the input"),
        (["--input", str(images / "a.jpg"), "--output", str(images / "a.json").replace(".json", ".jpg")], "would write over the input"),
    ]
    for flags, message in cases:
        assert main(_predict(tiny_files, *flags)) == 2, flags
        line = _one_error(capsys)
        assert line.startswith("error: --output ") and message in line, line
    assert _snapshot(images) == before


@pytest.mark.hostile("inputs overwritten, outputs raced")
def test_a_drawn_video_never_replaces_its_input(tiny_files: TinyFiles, tmp_path: Path, capsys):
    import numpy as np

    from ssd.data.synth import COGNATA_CLASSES, draw_frame
    from ssd.video import VideoWriter

    source = tmp_path / "drive.mp4"
    with VideoWriter(source, 96, 64, fps=10) as writer:
        for _ in range(3):
            writer.write(draw_frame(np.random.default_rng(0), 64, 96, COGNATA_CLASSES, (1, 3))[0])
    before = source.read_bytes()
    assert main(_predict(tiny_files, "--input", str(source), "--output", str(source))) == 2
    assert "would write over the input" in _one_error(capsys) and source.read_bytes() == before


@pytest.mark.hostile("inputs overwritten, outputs raced")
def test_a_second_run_into_a_held_output_folder_is_refused(tiny_files: TinyFiles, images: Path, tmp_path: Path, capsys):
    output = tmp_path / "out"
    output.mkdir()
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            (output / ".lock").write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "started": "2026-12-02 10:00:00"}))
            for argv in (_predict(tiny_files, "--input", str(images), "--output", str(output)),
                         ["data", "synth", "--format", "coco", "--out", str(output), "--images", "2", "--size", "32x32"],
                         ["evaluate", "--config", str(tiny_files.config), "--pretrained-model", str(tiny_files.checkpoint), "--dataset",
                          "cognata", "--data-path", str(tiny_files.data), "--device", "cpu", "--output-dir", str(output)]):
                assert main(argv) == 2, argv
                line = [l for l in capsys.readouterr().err.splitlines() if l.startswith("error:")]
                assert line == [f"error: {output}: in use by another run (process {other.pid}, since 2026-12-02 10:00:00); "
                                "wait for it or choose another folder"], line
        finally:
            other.kill()
    assert sorted(p.name for p in output.iterdir()) == [".lock"]  # nothing written beside the other run's lock
    assert main(_predict(tiny_files, "--input", str(images), "--output", str(output))) == 0  # its process gone: taken over
    assert not (output / ".lock").exists() and (output / "detections.json").is_file()


@pytest.mark.hostile("silence and vague words")
def test_what_a_folder_holds_besides_images_is_named_not_dropped(tiny_files: TinyFiles, tmp_path: Path, capsys, caplog):
    from PIL import Image

    folder = tmp_path / "mixed"
    folder.mkdir()
    write_image(folder / "a.png", (60, 90))
    pixels = write_image(tmp_path / "frame.png", (60, 90), seed=1)
    frames = [Image.fromarray(pixels), Image.fromarray(pixels[::-1].copy())]
    frames[0].save(folder / "still.gif")
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    (folder / "notes.txt").write_text("x")
    (folder / "gone.png").symlink_to(tmp_path / "nothing.png")
    (folder / "sub").mkdir()
    (folder / ".hidden").write_text("x")
    output = tmp_path / "out"
    assert main(_predict(tiny_files, "--input", str(folder), "--output", str(output), "--num-workers", "0")) == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert warning == [f"warning: 3 entries of {folder} are not images and are left out: gone.png (a broken link), notes.txt "
                       "(not one of .jpg, .jpeg, .png, .bmp, .webp, .tif, .tiff, .gif), sub (a folder)"], warning
    assert "animated.gif" in caplog.text and "animated GIF of 2 frames" in caplog.text and "skipped 1 unreadable" in captured.out
    records = json.loads((output / "detections.json").read_text())
    assert [Path(r["image"]).name for r in records] == ["a.png", "still.gif"]
    assert main(_predict(tiny_files, "--input", str(folder / "animated.gif"))) == 2
    assert "animated.gif: an animated GIF of 2 frames, not an image" in _one_error(capsys)


@pytest.mark.hostile("faults of the machine")
@pytest.mark.parametrize("writer", ["bytes", "checkpoint", "index cache", "video"])
def test_every_writer_leaves_the_old_file_or_none_when_the_write_fails(writer: str, tmp_path: Path):
    """The one atomic-write helper under each kind of output: a failure inside the write leaves the
    previous file untouched (or no file) and no temporary beside it."""
    import numpy as np
    import torch

    from ssd.atomic_file import atomic_write
    from ssd.checkpoint import atomic_save
    from ssd.data.index_cache import IndexCache
    from ssd.video import VideoWriter

    target = tmp_path / {"bytes": "out.json", "checkpoint": "last.pth", "index cache": ".ssd_index_index.npz", "video": "out.mp4"}[writer]
    target.write_bytes(b"previous")

    class Fault(Exception):
        pass

    with pytest.raises(Fault):
        if writer == "bytes":
            with atomic_write(target) as handle:
                handle.write(b"half")
                raise Fault
        elif writer == "checkpoint":  # the bytes written, then the disk fails to sync them
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(os, "fsync", lambda fd: (_ for _ in ()).throw(Fault()))
                atomic_save({"weights": torch.ones(3)}, target)
        elif writer == "index cache":
            with pytest.MonkeyPatch.context() as patch:
                def failing_savez(handle, **arrays):
                    handle.write(b"half")
                    raise Fault
                patch.setattr(np, "savez", failing_savez)
                IndexCache(None).save(tmp_path, "index", "key", {}, {"a": np.zeros(2)})
        else:
            with VideoWriter(target, 32, 32, fps=10) as video:
                video.write(np.zeros((32, 32, 3), np.uint8))
                raise Fault
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]
    if writer == "video":  # and a finished one is in place, playable
        with VideoWriter(target, 32, 32, fps=10) as video:
            video.write(np.zeros((32, 32, 3), np.uint8))
        assert target.read_bytes()[4:8] == b"ftyp" and sorted(p.name for p in tmp_path.iterdir()) == [target.name]
