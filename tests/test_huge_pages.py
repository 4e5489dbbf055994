import os
import subprocess
import sys

import pytest

PRINT_SETTING = "import ssd, os; print(os.environ['THP_MEM_ALLOC_ENABLE'])"


@pytest.mark.parametrize(("given", "expected"), [(None, "1"), ("0", "0")])
def test_importing_ssd_turns_huge_pages_on_unless_the_user_set_it(given, expected):
    env = {key: value for key, value in os.environ.items() if key != "THP_MEM_ALLOC_ENABLE"}
    if given is not None:
        env["THP_MEM_ALLOC_ENABLE"] = given
    done = subprocess.run([sys.executable, "-c", PRINT_SETTING], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == expected
