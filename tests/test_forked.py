"""tests/forked.py: a forked command sees what ``python ...`` would give it (folder, environment, argv,
threads, the fork start method for its own workers) and reports its exit as subprocess does."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import forked

REPORT = """
import json, multiprocessing, os, sys, torch
print(json.dumps({"cwd": os.getcwd(), "argv": sys.argv, "marker": os.environ.get("FORKED_MARKER"), "threads": torch.get_num_threads(),
                  "start": multiprocessing.get_start_method(), "main": __name__}))
print("to stderr", file=sys.stderr)
sys.exit(3)
"""


def test_a_forked_command_sees_what_a_new_interpreter_would(tmp_path: Path):
    env = {"FORKED_MARKER": "here", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    done = forked.run([sys.executable, "-c", REPORT, "first", "second"], tmp_path, env, timeout=60)
    fresh = subprocess.run([sys.executable, "-c", REPORT, "first", "second"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (fresh.returncode, fresh.stderr) == (3, "to stderr\n")
    assert json.loads(done.stdout) == json.loads(fresh.stdout) == {
        "cwd": str(tmp_path), "argv": ["-c", "first", "second"], "marker": "here", "threads": 1, "start": "fork", "main": "__main__"}


def test_a_script_runs_as_main_from_its_folder_and_a_module_with_m(tmp_path: Path):
    script = tmp_path / "tool.py"
    script.write_text("import sys\nprint(__name__, sys.argv[1:], sys.path[0])\n")
    done = forked.run([sys.executable, str(script), "a"], Path.cwd(), timeout=60)
    assert (done.returncode, done.stdout) == (0, f"__main__ ['a'] {tmp_path}\n")
    (tmp_path / "tool_module.py").write_text("import sys\nprint(__name__, sys.argv[1:])\n")
    done = forked.run([sys.executable, "-m", "tool_module", "b"], tmp_path, timeout=60)
    assert (done.returncode, done.stdout) == (0, "__main__ ['b']\n")


def test_a_killed_command_reports_the_signal_as_subprocess_does(tmp_path: Path):
    process = forked.start([sys.executable, "-c", "import time; print('ready', flush=True); time.sleep(60)"], tmp_path)
    assert process.wait_until(lambda: process.output()[0] == "ready\n", 60) and process.poll() is None
    process.send_signal(signal.SIGKILL)
    assert process.wait(60) == -signal.SIGKILL == process.poll()
    process.close()
