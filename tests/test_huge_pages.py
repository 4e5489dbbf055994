import os
import subprocess
import sys

import pytest

IMPORT_ONLY = "import os, ssd, ssd.huge_pages; print(os.environ.get('THP_MEM_ALLOC_ENABLE'))"
# what a command sees when it runs (ssd.cli.main.run_command turns huge pages on before it)
COMMAND_SEES = """
import argparse, os
from ssd.cli.main import run_command
run_command(argparse.Namespace(run=lambda args: print(os.environ.get('THP_MEM_ALLOC_ENABLE'), 'torch' in __import__('sys').modules)))
"""


def _run(code: str, given: str | None) -> str:
    env = {key: value for key, value in os.environ.items() if key != "THP_MEM_ALLOC_ENABLE"}
    if given is not None:
        env["THP_MEM_ALLOC_ENABLE"] = given
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()


def test_importing_ssd_leaves_the_allocator_setting_alone():
    assert _run(IMPORT_ONLY, None) == "None"


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("0", "0"), ("1", "1")])
def test_a_command_runs_with_huge_pages_unless_the_user_said_otherwise_before_torch_loads(given, expected):
    assert _run(COMMAND_SEES, given) == f"{expected} False"
