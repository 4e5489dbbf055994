"""One run per save folder: the lock names the run holding it; stale locks are taken over."""
from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ssd.cli.main import main
from ssd.engine.run_lock import FolderInUseError, RunLock


def _hold(folder: Path, pid: int, host: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    lock.write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "2026-12-01 10:00:00"}))
    return lock


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_live_run_keeps_the_folder_and_is_named(tmp_path: Path):
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            lock = _hold(tmp_path, other.pid)
            with pytest.raises(FolderInUseError, match=rf"in use by another run \(process {other.pid}, since 2026-12-01 10:00:00\)"):
                RunLock(tmp_path).acquire()
            assert json.loads(lock.read_text())["pid"] == other.pid  # untouched
        finally:
            other.kill()


def test_a_lock_of_another_host_names_the_file_to_remove(tmp_path: Path):
    lock = _hold(tmp_path, 4242, host="elsewhere")
    with pytest.raises(FolderInUseError, match=rf"in use by run 4242 on host elsewhere .*; if that run is gone, remove {lock}"):
        RunLock(tmp_path).acquire()


@pytest.mark.parametrize("left", ["dead run", "half-written lock"])
def test_a_stale_lock_is_taken_over_with_a_message_and_released_at_the_end(left: str, tmp_path: Path, caplog):
    if left == "dead run":
        _hold(tmp_path, _dead_pid())
    else:
        (tmp_path / ".lock").write_text('{"pid": 12')
    with caplog.at_level(logging.WARNING), RunLock(tmp_path) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()
        assert "taking over the lock of run" in caplog.text and "no longer running" in caplog.text
    assert not lock.path.exists()


def test_a_second_training_run_on_the_folder_is_one_error_line(tmp_path: Path, capsys):
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            _hold(tmp_path / "run", other.pid)
            argv = ["train", "--data-path", str(tmp_path / "no-data"), "--config", "coco_300x300", "--save-folder", str(tmp_path / "run"), "--device", "cpu"]
            assert main(argv) == 2
        finally:
            other.kill()
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'run'}: in use by another run (process {other.pid}, since 2026-12-01 10:00:00); "
                   "wait for it or choose another folder"]
