"""Bad dataset input: one record per problem, logged, kept on the dataset, fatal in strict mode.

A bad file or annotation never crashes an epoch midway and never passes silently: readers collect
:class:`Problem` records, and a :class:`ProblemLog` logs them (the first few in full, then a count),
keeps them as a list, and in strict mode raises :class:`DataError` on the first one.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from ssd.errors import SSDError

log = logging.getLogger(__name__)

# problems logged one by one before the log switches to a summary count
LOG_LIMIT = 20


class DataError(SSDError):
    """A dataset that cannot be used as given; the message names the file or folder."""


class CorruptImageError(DataError):
    """An image file that cannot be decoded (truncated, not an image, wrong size)."""


@dataclass(frozen=True)
class Problem:
    """One bad input: the file it is in and what is wrong (the reason starts with a fixed phrase)."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


class ProblemLog:
    """The problems of one dataset, in the order found; duplicates are kept once."""

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.items: list[Problem] = []
        self._seen: set[Problem] = set()

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Problem]:
        return iter(self.items)

    def report(self, problem: Problem, *, quiet: bool = False) -> None:
        """Record ``problem``; raise :class:`DataError` instead in strict mode.

        ``quiet`` records without logging (for problems already logged by a loader worker).
        """
        if self.strict:
            raise DataError(f"{problem} (strict mode)")
        if problem in self._seen:
            return
        self._seen.add(problem)
        self.items.append(problem)
        if quiet:
            return
        if len(self.items) <= LOG_LIMIT:
            log.warning("bad input: %s", problem)
        elif len(self.items) == LOG_LIMIT + 1:
            log.warning("more bad input; further problems are only counted (see the dataset's problems)")

    def report_all(self, problems: Iterable[Problem]) -> None:
        for problem in problems:
            self.report(problem)

    def counts(self) -> Counter[str]:
        """Number of problems per kind (the reason up to its first colon)."""
        return Counter(p.reason.split(":", 1)[0] for p in self.items)

    def summary(self) -> str:
        """``"no problems"`` or e.g. ``"3 problems (2 malformed row, 1 missing column)"``."""
        if not self.items:
            return "no problems"
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.counts().most_common())
        return f"{len(self.items)} problems ({kinds})"
