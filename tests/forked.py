"""The project's commands in processes of their own, without each paying the interpreter's import of torch.

A process that imports torch and torchvision spends about 4 s of CPU before its first line of work, and the
tests that must run a command in a process (to kill it, to resume it, to run it as a user does) start
dozens. These are forked from a server that imported them once (multiprocessing's forkserver), so each is a
real process of its own (its own pid, killed with a real signal, its exit status reported) that runs the
script as ``python script.py ...`` would, in the working folder and environment given.

What a fresh interpreter reads before its first line (``LD_PRELOAD``, ``MALLOC_*``, the import-time
environment) is the server's: commands that test those start an interpreter with :mod:`subprocess`.
"""
from __future__ import annotations

import importlib.util
import multiprocessing
import os
import runpy
import signal
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload(["torch", "torchvision", "ssd.cli.main", "ssd.cli.train", "ssd.engine.fit"])


def _child(command: list[str], cwd: str, env: dict[str, str], stdout: str, stderr: str) -> None:
    """The forked process: the command's folder, environment, output files and argv, then what it runs."""
    import torch

    multiprocessing.set_start_method(None, force=True)  # the platform's default (fork), not the server's, for its own workers
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    if "OMP_NUM_THREADS" in env:  # read at start-up by a fresh interpreter, by the server's here
        torch.set_num_threads(int(env["OMP_NUM_THREADS"]))
    for fd, path in ((1, stdout), (2, stderr)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    if Path(command[0]).resolve() != Path(sys.executable).resolve():  # a console script (``.venv/bin/ssd``): a Python file pip wrote
        command = [sys.executable, *command]
    option, rest = command[1], command[2:]
    if option == "-c":
        sys.argv = ["-c", *rest[1:]]
        exec(compile(rest[0], "<string>", "exec"), {"__name__": "__main__"})
    elif option == "-m":
        sys.path.insert(0, cwd)  # as ``python -m`` puts the working folder first
        sys.argv = [importlib.util.find_spec(rest[0]).origin, *rest[1:]]
        runpy.run_module(rest[0], run_name="__main__", alter_sys=True)
    else:
        sys.argv = command[1:]
        sys.path.insert(0, str(Path(option).resolve().parent))  # as ``python script.py`` puts the script's folder first
        runpy.run_path(option, run_name="__main__")


class Forked:
    """A started command: ``pid``, :meth:`poll`, :meth:`wait`, :meth:`send_signal`, and its output as text."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str] | None):
        self._folder = tempfile.TemporaryDirectory(prefix="forked-")
        self.stdout_path, self.stderr_path = Path(self._folder.name) / "stdout", Path(self._folder.name) / "stderr"
        arguments = (list(command), str(cwd), dict(os.environ if env is None else env), str(self.stdout_path), str(self.stderr_path))
        self._process = _CONTEXT.Process(target=_child, args=arguments)
        self._process.start()
        self.pid = self._process.pid

    def poll(self) -> int | None:
        return None if self._process.is_alive() else self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise TimeoutError(f"forked: pid {self.pid} still running after {timeout} s")
        return self._process.exitcode

    def send_signal(self, signum: int) -> None:
        if self._process.exitcode is None:
            os.kill(self.pid, signum)

    def wait_until(self, condition: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
        """Poll ``condition`` while the command runs, for up to ``timeout`` seconds; its last value."""
        deadline = time.monotonic() + timeout
        while not condition() and self.poll() is None and time.monotonic() < deadline:
            time.sleep(interval)
        return condition()

    def kill(self) -> int:
        """SIGKILL the command (if it still runs), reap it and release its output files; its exit status."""
        self.send_signal(signal.SIGKILL)
        returncode = self.wait()
        self.close()
        return returncode

    def output(self) -> tuple[str, str]:
        """What the command has written to stdout and stderr so far."""
        return tuple(path.read_text(errors="replace") if path.is_file() else "" for path in (self.stdout_path, self.stderr_path))

    def close(self) -> None:
        self._process.close()
        self._folder.cleanup()


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


def start(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> Forked:
    """Start ``command``: ``[sys.executable, script | -c code | -m module, ...]`` or a console script's."""
    return Forked(command, cwd, env)


def run(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 600) -> Finished:
    """Run ``command`` to its end, as :func:`subprocess.run` with ``capture_output=True, text=True``."""
    process = start(command, cwd, env)
    try:
        returncode = process.wait(timeout)
    except TimeoutError:
        process.kill()
        raise
    try:
        return Finished(returncode, *process.output())
    finally:
        process.close()
