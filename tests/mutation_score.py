"""Print the score of the last `make mutation` run: mutants killed among those tested, and the survivors.

Reads ``mutmut results --all true`` (one ``name: status`` line per mutant) in the repository root.
Mutants left "not checked" are outside the run's scope (``MUTATION_SCOPE`` in the Makefile).
"""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

KILLED = {"killed", "caught by type check"}


def main() -> int:
    mutmut = Path(sys.executable).with_name("mutmut")
    listing = subprocess.run([str(mutmut), "results", "--all", "true"], capture_output=True, text=True, check=True).stdout
    status = dict(line.strip().rsplit(": ", 1) for line in listing.splitlines() if ": " in line)
    tested = {name: state for name, state in status.items() if state != "not checked"}
    counts = Counter(tested.values())
    killed = sum(counts[state] for state in KILLED)
    print(f"mutants tested: {len(tested)}; " + ", ".join(f"{state}: {n}" for state, n in sorted(counts.items())))
    if tested:
        print(f"score: {killed}/{len(tested)} killed = {100 * killed / len(tested):.1f} %")
    for name, state in sorted(tested.items()):
        if state not in KILLED:
            print(f"  {state:>10}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
