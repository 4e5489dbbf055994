"""Faults of the machine: a full disk, a read-only folder, a link loop, a file where a folder is needed.

Each ends as one line naming the path and the fault in words, exit status 2, and leaves every file
that was there as it was. The disk is a real tmpfs where this machine lets the test mount one (root
with CAP_SYS_ADMIN, as here and in CI), else the fault is simulated at the OS boundary (``open``,
``os.replace``, ``os.mkdir`` raising the errno for paths in the folder); both kinds run everywhere.
"""
from __future__ import annotations

import builtins
import contextlib
import errno
import multiprocessing
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from support import TinyFiles

from ssd.checkpoint import LAST, atomic_save
from ssd.cli.main import main
from ssd.errors import describe_os_error

pytestmark = pytest.mark.hostile("faults of the machine")

SENTINEL = b"written before the run"


def _mount(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True).returncode == 0


def _simulate(monkeypatch, folder: Path, code: int) -> None:
    """Writes, renames and new folders under ``folder`` fail with ``code``, as the kernel would."""
    inside = lambda path: str(Path(path).absolute()).startswith(str(folder) + os.sep)  # noqa: E731
    real_open, real_replace, real_mkdir = builtins.open, os.replace, os.mkdir

    def open_(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and inside(file) and any(c in mode for c in "wax+"):
            raise OSError(code, os.strerror(code), str(file))
        return real_open(file, mode, *args, **kwargs)

    def replace(source, target, *args, **kwargs):
        if inside(target):
            raise OSError(code, os.strerror(code), str(source), None, str(target))
        return real_replace(source, target, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if inside(path) and not os.path.isdir(path):
            raise OSError(code, os.strerror(code), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", open_)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(os, "mkdir", mkdir)


@contextlib.contextmanager
def faulty_folder(tmp_path: Path, monkeypatch, fault: str, kind: str) -> Iterator[Path]:
    """A folder holding ``existing/metrics.json`` (SENTINEL) that is full or read-only: mounted for
    ``kind`` "real" where the machine allows it, else (and for "simulated") simulated."""
    folder = tmp_path / f"{fault}_{kind}"
    mounted = kind == "real" and _mount(folder, "size=512k")
    (folder / "existing").mkdir(parents=True)
    (folder / "existing" / "metrics.json").write_bytes(SENTINEL)
    try:
        if mounted and fault == "full":
            with contextlib.suppress(OSError):
                with open(folder / "filler", "wb") as handle:
                    while True:
                        handle.write(b"\0" * 65536)
        elif mounted:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        else:
            _simulate(monkeypatch, folder, errno.ENOSPC if fault == "full" else errno.EROFS)
        yield folder
    finally:
        monkeypatch.undo()
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.parametrize(("code", "words"), [
    (errno.ENOSPC, "no space left on the device (the disk is full)"), (errno.EROFS, "the file system is read-only"),
    (errno.ELOOP, "too many levels of symbolic links (a link loop)"), (errno.ENOTDIR, "a part of the path is a file, not a folder"),
    (errno.EACCES, "permission denied"), (errno.EIO, "input/output error (a failing disk or network file system)"),
])
def test_a_fault_is_named_in_words(code: int, words: str):
    assert describe_os_error(OSError(code, os.strerror(code), "/x/y")) == f"/x/y: {words}"


def test_file_exists_says_what_is_wrong(tmp_path: Path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(FileExistsError) as raised:
        (tmp_path / "a_file").mkdir(exist_ok=True)
    assert describe_os_error(raised.value) == f"{tmp_path / 'a_file'}: exists and is not a folder"
    (tmp_path / "a_folder").mkdir()
    with pytest.raises(FileExistsError) as raised:
        (tmp_path / "a_folder").mkdir()
    assert describe_os_error(raised.value) == f"{tmp_path / 'a_folder'}: already exists"


@pytest.mark.parametrize("kind", ["real", "simulated"])
@pytest.mark.parametrize(("fault", "words"), [("full", "the disk is full"), ("read_only", "the file system is read-only")])
def test_evaluate_into_a_full_or_read_only_folder_is_one_line_and_loses_nothing(
        tiny_files: TinyFiles, tmp_path: Path, monkeypatch, capsys, fault: str, words: str, kind: str):
    argv = ["evaluate", "--config", str(tiny_files.config), "--pretrained-model", str(tiny_files.checkpoint), "--dataset", "cognata",
            "--data-path", str(tiny_files.data), "--device", "cpu", "--num-workers", "0"]
    with faulty_folder(tmp_path, monkeypatch, fault, kind) as folder:
        status = main([*argv, "--output-dir", str(folder / "existing")])
        err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "evaluating" not in line]  # not the progress bar
        assert status == 2 and len(err) == 1 and err[0].startswith(f"error: {folder / 'existing'}/") and words in err[0], err
        assert (folder / "existing" / "metrics.json").read_bytes() == SENTINEL
        assert not [p.name for p in (folder / "existing").iterdir() if p.name != "metrics.json"]  # no partial file left


@pytest.mark.parametrize("kind", ["real", "simulated"])
def test_a_failed_checkpoint_write_keeps_the_last_good_one(tmp_path: Path, monkeypatch, kind: str):
    with faulty_folder(tmp_path, monkeypatch, "read_only" if kind == "simulated" else "full", kind) as folder:
        last = folder / "existing" / "metrics.json"  # any file the run wrote before: here, the sentinel
        with pytest.raises(OSError) as raised:
            atomic_save({"weights": torch.zeros(200_000)}, last)
        assert raised.value.filename == str(last) and last.read_bytes() == SENTINEL
        assert [p.name for p in last.parent.iterdir()] == ["metrics.json"]


def test_a_failed_epoch_checkpoint_still_leaves_a_resume_point(tmp_path: Path, monkeypatch):
    """The save order: the epoch file, best.pth, then last.pth; a failure before last.pth still writes it."""
    from ssd.engine import fit as fit_module

    written = []

    def save(checkpoint, path):
        if path.name != LAST:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        written.append(path.name)

    monkeypatch.setattr(fit_module, "atomic_save", save)
    trainer = SimpleNamespace(
        _checkpoint=lambda *args: {}, context=SimpleNamespace(is_main=True),
        options=SimpleNamespace(save_folder=tmp_path, save_name="SSD", checkpoint_freq=1, epochs=3),
    )
    with pytest.raises(OSError) as raised:
        fit_module.Trainer._save(trainer, 0, 0.5, True, {})
    assert written == [LAST] and Path(raised.value.filename).name == "SSD_ep0.pth"


def test_a_run_that_fails_mid_epoch_stops_its_loader_workers_at_once(tmp_path: Path, monkeypatch, cognata: Path, config_path: Path, capsys):
    """A full disk at the first checkpoint ends ``ssd train`` with one line, and its loader workers stop with
    it: left to the garbage collector, each would stop only after a 5-second timeout (ssd.data.loader)."""
    from ssd.engine import fit as fit_module

    def full(checkpoint, path):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(fit_module, "atomic_save", full)
    before = set(multiprocessing.active_children())
    argv = ["train", "--dataset", "cognata", "--data-path", str(cognata), "--config", str(config_path), "--save-folder", str(tmp_path / "run"),
            "--epochs", "1", "--batch-size", "2", "--num-workers", "1", "--device", "cpu", "--no-progress"]
    assert main(argv) != 0
    (line,) = capsys.readouterr().err.splitlines()
    assert line.endswith("last.pth: no space left on the device (the disk is full)")
    assert set(multiprocessing.active_children()) <= before


def test_a_link_loop_and_a_file_for_a_folder_are_one_line(tmp_path: Path, capsys):
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    (tmp_path / "a_file").write_bytes(SENTINEL)
    for out, words in ((tmp_path / "loop_a" / "data", "link loop"), (tmp_path / "a_file" / "data", "not a folder")):
        assert main(["data", "synth", "--format", "coco", "--out", str(out), "--images", "2", "--size", "32x32"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and words in err[0] and str(tmp_path) in err[0], err
    assert (tmp_path / "a_file").read_bytes() == SENTINEL


@pytest.mark.parametrize("kind", ["real", "simulated"])
def test_loadgen_into_a_read_only_folder_is_one_line(tiny_files: TinyFiles, tmp_path: Path, monkeypatch, capsys, kind: str):
    """LoadGen itself gives up on a folder it cannot write without a word; the run must not pass for done."""
    argv = ["loadgen", "--config", str(tiny_files.config), "--pretrained-model", str(tiny_files.checkpoint), "--data-path",
            str(tiny_files.data), "--device", "cpu", "--count", "1", "--accuracy"]
    with faulty_folder(tmp_path, monkeypatch, "read_only", kind) as folder:
        status = main([*argv, "--output-dir", str(folder / "existing")])
        err = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and len(err) == 1 and "the file system is read-only" in err[0] and str(folder / "existing") in err[0], err
        assert [p.name for p in (folder / "existing").iterdir()] == ["metrics.json"]
