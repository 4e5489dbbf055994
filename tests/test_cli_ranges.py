"""Every numeric flag of every command is declared with its range (ssd.cli.ranges) and refuses what it cannot mean."""
from __future__ import annotations

import argparse
import math

import pytest

from support import command_parsers, numeric_flags

from ssd.cli.main import build_parser
from ssd.cli.ranges import Number

pytestmark = pytest.mark.hostile("numbers")


FLAGS = numeric_flags()


def test_no_numeric_flag_escapes_the_table():
    """A flag typed plain int or float would take nan, inf or any sign: none is left."""
    plain = [(words, action.option_strings) for words, parser in command_parsers(build_parser()) for action in parser._actions
             if action.type in (int, float)]
    assert plain == [] and len(FLAGS) >= 30


def _cases(number: Number) -> list[tuple[str, bool]]:
    """Values at each bound, one step either side, and non-numbers, with whether the flag takes them."""
    step = 1 if number.kind is int else 1e-6
    cases = [("nan", False), ("inf", False), ("-inf", False), ("ten", False), ("", False)]
    if number.kind is int:
        cases.append(("1.5", False))
    if number.low is not None:
        low = int(number.low) if number.kind is int else number.low
        cases += [(repr(low), not number.low_open), (repr(low - step), False), (repr(low + step), True)]
    if number.high is not None:
        high = int(number.high) if number.kind is int else number.high
        cases += [(repr(high), not number.high_open), (repr(high + step), False), (repr(high - step), True)]
    if number.low is None and number.high is None:
        cases.append(("0", True))
    return cases


@pytest.mark.parametrize(("words", "flag", "number"), FLAGS, ids=[f"{' '.join(w)} {f}" for w, f, _ in FLAGS])
def test_each_numeric_flag_at_its_bounds(words: tuple[str, ...], flag: str, number: Number, capsys):
    parser = build_parser()
    command = next(found for found_words, found in command_parsers(parser) if found_words == words)
    required = [part for action in command._actions if action.required and action.option_strings
                for part in (action.option_strings[0], action.choices[0] if action.choices else "x")]
    required += ["x" for action in command._actions if action.required and not action.option_strings
                 and not isinstance(action, argparse._SubParsersAction)]  # positionals (ssd report's EVAL_DIR)
    dest = next(action.dest for action in command._actions if flag in action.option_strings)
    for text, taken in _cases(number):
        argv = [*words, *required, f"{flag}={text}"]
        if taken:
            value = getattr(parser.parse_args(argv), dest)
            value = value[0] if isinstance(value, list) else value
            assert math.isfinite(value) and value == number.kind(text), (argv, value)
        else:
            with pytest.raises(SystemExit) as exited:
                parser.parse_args(argv)
            err = capsys.readouterr().err.strip().splitlines()
            assert exited.value.code == 2 and len(err) == 1, (argv, err)
            assert err[0].startswith(f"error: ssd {' '.join(words)}: argument {flag}") and f"{number.meaning} must be {number.describe()}" in err[0], err
