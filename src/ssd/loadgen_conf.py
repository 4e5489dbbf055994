"""LoadGen settings files (``mlperf.conf``, ``user.conf``): read, checked, and applied to a ``TestSettings``.

The format is LoadGen's: ``model.scenario.key = value`` lines, ``#`` comments, ``*`` for any model
or scenario, and for each key the most specific entry wins (``model.scenario``, ``*.scenario``,
``model.*``, ``*.*``; a later line replaces an earlier one of the same key). The keys mean what
LoadGen's ``TestSettings::FromConfig`` makes of them (percentiles in percent, times in ms).

We read the files ourselves instead of calling ``TestSettings.FromConfig``: that call takes seeds
only from the ``mlperf.conf`` compiled into the LoadGen binary (a file's are ignored), loads that
built-in file only the first time a process reads a user.conf, and skips a malformed line or an
unknown key without a word. Here the benchmark's ``mlperf.conf`` ships with the package
(:data:`DEFAULT_MLPERF_CONF`), another can be named, a user.conf that sets a seed is refused as
LoadGen's rules refuse it, and a bad line or key is an error naming the file and line.

Every line is held to what its meaning allows (:class:`Setting`: percentiles in (0, 100], durations
that fit LoadGen's signed nanoseconds, switches 0 or 1, whole numbers written as LoadGen's
``strtoull`` reads them), for models and scenarios that exist: a line LoadGen would ignore or read
differently is an error, not a run under other rules than the user wrote.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssd.errors import SSDError

DEFAULT_MLPERF_CONF = Path(__file__).with_name("mlperf.conf")
MODEL_NAME = "ssd"  # MLPerf Automotive's name for this benchmark in its conf files
# the models MLPerf Automotive's mlperf.conf names (v1.0); a line for any other is a misspelling LoadGen would ignore
KNOWN_MODELS = ("ssd", "bevformer", "uniad", "deeplabv3plus", "llama3_1-8b")
KNOWN_SCENARIOS = ("SingleStream", "MultiStream", "ConstantStream", "Offline")  # the automotive LoadGen's (5.0.15)
_KEY = re.compile(r"^([A-Za-z0-9_\-]+|\*)\.([A-Za-z]+|\*)\.([a-z0-9_]+)$")
# LoadGen reads integers with strtoull(text, 0): decimal, or hex with 0x; a leading 0 would make it octal and
# an exponent would end the number, so those are refused rather than read differently from LoadGen
_INTEGER = re.compile(r"^(0|[1-9]\d*|0[xX][0-9a-fA-F]+)$")
_DECIMAL = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")  # stod's: never negative, nan or inf here
UINT64_MAX = 2**64 - 1
INT32_MAX = 2**31 - 1
# LoadGen keeps durations as signed 64-bit nanoseconds and generates queries for twice the minimum
# duration, so a duration of more ms than this overflows (about 146 years)
MAX_DURATION_MS = (2**63 - 1) // (2 * 10**6)
# LoadGen generates every query of a performance run before it issues the first and holds them all in
# memory; the benchmark's runs generate 120,000 (SingleStream) and 100,000 (ConstantStream)
MAX_GENERATED_QUERIES = 10**8


class LoadgenConfError(SSDError):
    """A settings file that cannot be read or applied."""


@dataclass(frozen=True)
class Setting:
    """How one conf key reaches ``TestSettings``, and the values its meaning allows.

    ``attribute``: the ``TestSettings`` attribute; ``scale``: the factor from the file's unit to
    LoadGen's (percent -> fraction, ms -> ns); ``integer``: written as a whole number (as LoadGen
    parses it); ``low`` .. ``high``: the range in the file's unit (``low_open``: ``low`` itself is
    excluded); ``meaning``: what the value is, for errors.
    """

    attribute: str
    scale: float = 1.0
    integer: bool = True
    low: float = 0
    high: float = UINT64_MAX
    low_open: bool = False
    meaning: str = "a count"

    def check(self, text: str) -> int | float:
        """The value ``text`` gives in the file's unit; raises :class:`ValueError` with the reason."""
        if self.integer and not _INTEGER.match(text):
            raise ValueError(f"{self.meaning} is a whole number (decimal, or hex with 0x; no leading 0, exponent or sign), got {text!r}")
        if not self.integer and not (_DECIMAL.match(text) or _INTEGER.match(text)):
            raise ValueError(f"{self.meaning} is a number from {self.low:g} to {self.high:g}, got {text!r}")
        value = _value(text)
        self.check_value(value)
        return value

    def check_value(self, value: float) -> None:
        """Raise :class:`ValueError` unless ``value`` (in the file's unit) is within the range."""
        if value != value or not (self.low < value if self.low_open else self.low <= value) or value > self.high:
            raise ValueError(f"{self.meaning} must be {self.range()}, got {value:g}" if isinstance(value, float) else
                             f"{self.meaning} must be {self.range()}, got {value}")

    def range(self) -> str:
        high = "2^64 - 1" if self.high == UINT64_MAX else f"{self.high:g}"
        return f"{'above' if self.low_open else 'from'} {self.low:g} {'and at most' if self.low_open else 'to'} {high}"


def check_seconds(seconds: float) -> None:
    """Raise :class:`ValueError` unless ``seconds`` is a duration LoadGen can hold (a minimum duration
    given in seconds, as ``ssd loadgen --time`` and ``--min-duration`` take it)."""
    if not 0 <= seconds <= MAX_DURATION_MS / 1000:  # also false for nan
        raise ValueError(f"must be from 0 to {MAX_DURATION_MS / 1000:.3g} seconds, got {seconds:g}")


def _seed(attribute: str) -> Setting:
    return Setting(attribute, meaning="a seed")


def _flag(attribute: str) -> Setting:
    return Setting(attribute, high=1, meaning="a switch (0 or 1)")


def _duration(attribute: str) -> Setting:
    return Setting(attribute, high=MAX_DURATION_MS, meaning="a duration in ms")


def _percentile(attribute: str) -> Setting:
    return Setting(attribute, 0.01, integer=False, high=100, low_open=True, meaning="a percentile")


def _expected_latency(attribute: str) -> Setting:  # ms in the file, whole ns in LoadGen: at least 1 ns
    return Setting(attribute, 1e6, integer=False, low=1e-6, high=MAX_DURATION_MS, meaning="a latency in ms")


def _qps(attribute: str) -> Setting:  # LoadGen schedules queries 1/qps apart in whole ns
    return Setting(attribute, integer=False, high=1e9, low_open=True, meaning="queries per second")


# the keys of LoadGen's FromConfig (automotive build, which adds ConstantStream on the server settings)
SEED_SETTINGS = {name: _seed(name) for name in ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed")}
MLPERF_CONF_ONLY = {
    **SEED_SETTINGS,
    "accuracy_log_probability": Setting("accuracy_log_probability", 0.01, integer=False, high=100, meaning="a probability in percent"),
    "test05": _flag("test05"),
    **{name: _seed(name) for name in ("test05_qsl_rng_seed", "test05_sample_index_rng_seed", "test05_schedule_rng_seed")},
}
SETTINGS = {
    **MLPERF_CONF_ONLY,
    "min_duration": _duration("min_duration_ms"),
    "max_duration": _duration("max_duration_ms"),
    "min_query_count": Setting("min_query_count"),
    "max_query_count": Setting("max_query_count"),
    "performance_sample_count_override": Setting("performance_sample_count_override", meaning="a sample count (0: the QSL's)"),
    "performance_issue_unique": _flag("performance_issue_unique"),
    "performance_issue_same": _flag("performance_issue_same"),
    "performance_issue_same_index": Setting("performance_issue_same_index", meaning="a sample index"),
    "sample_concatenate_permutation": _flag("sample_concatenate_permutation"),
    "print_timestamps": _flag("print_timestamps"),
    "accuracy_log_rng_seed": _seed("accuracy_log_rng_seed"),
    "accuracy_log_sampling_target": Setting("accuracy_log_sampling_target"),
}
# keys whose meaning depends on the scenario they are written for: (key, scenario) -> setting
SCENARIO_SETTINGS = {
    ("target_latency_percentile", "SingleStream"): _percentile("single_stream_target_latency_percentile"),
    ("target_latency", "SingleStream"): _expected_latency("single_stream_expected_latency_ns"),
    ("target_latency_percentile", "MultiStream"): _percentile("multi_stream_target_latency_percentile"),
    ("target_latency", "MultiStream"): _expected_latency("multi_stream_expected_latency_ns"),
    ("samples_per_query", "MultiStream"): Setting("multi_stream_samples_per_query", low=1),
    ("target_latency_percentile", "ConstantStream"): _percentile("server_target_latency_percentile"),
    # whole ms; 0: the queries come at target_qps instead (as MLPerf Automotive's mlperf.conf sets for ssd)
    ("target_latency", "ConstantStream"): Setting("server_target_latency_ns", 1e6, high=MAX_DURATION_MS, meaning="a latency in ms (0: use target_qps)"),
    ("target_qps", "ConstantStream"): _qps("server_target_qps"),
    ("coalesce_queries", "ConstantStream"): _flag("server_coalesce_queries"),
    ("max_async_queries", "ConstantStream"): Setting("server_max_async_queries", high=INT32_MAX),
    ("constant_gen", "ConstantStream"): _flag("server_constant_gen"),
    ("target_qps", "Offline"): _qps("offline_expected_qps"),
}
# keys of the benchmark's files that this SUT has no use for (other models' grouped QSL, token
# latencies of language models, a test mode ``ssd loadgen --accuracy`` chooses, LoadGen's unused
# target_duration): accepted and left alone
IGNORED_KEYS = frozenset({
    "mode", "target_duration", "use_grouped_qsl", "group_sizes", "use_token_latencies", "ttft_latency", "tpot_latency",
    "infer_token_latencies", "token_latency_scaling_factor",
})
SCENARIO_KEYS = frozenset(key for key, _ in SCENARIO_SETTINGS)


def settings_of(name: str, scenario: str) -> list[Setting]:
    """The settings a line ``*.scenario.name`` sets (``scenario`` may be ``*``: every scenario's)."""
    if name in SETTINGS:
        return [SETTINGS[name]]
    return [setting for (key, key_scenario), setting in SCENARIO_SETTINGS.items() if key == name and scenario in ("*", key_scenario)]


def parse_conf(path: str | Path) -> dict[str, str]:
    """The ``model.scenario.key -> value`` entries of a settings file, in LoadGen's format."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LoadgenConfError(f"LoadGen settings file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise LoadgenConfError(f"{path}: cannot read LoadGen settings: {exc}") from exc
    entries: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        content = line.split("#", 1)[0].strip()
        if not content:
            continue
        key, equals, value = (part.strip() for part in content.partition("="))
        match = _KEY.match(key)
        if not equals or match is None or not value:
            raise LoadgenConfError(f"{path}, line {number}: expected 'model.scenario.key = value', got {line.strip()!r}")
        model, scenario, name = match.groups()
        if model != "*" and model not in KNOWN_MODELS:
            raise LoadgenConfError(f"{path}, line {number}: unknown model {model!r} (MLPerf Automotive's: {', '.join(KNOWN_MODELS)}, or *)")
        if scenario != "*" and scenario not in KNOWN_SCENARIOS:
            raise LoadgenConfError(f"{path}, line {number}: unknown scenario {scenario!r} (LoadGen's: {', '.join(KNOWN_SCENARIOS)}, or *)")
        if name not in SETTINGS and name not in SCENARIO_KEYS and name not in IGNORED_KEYS:
            raise LoadgenConfError(f"{path}, line {number}: unknown LoadGen setting {name!r}")
        if name not in IGNORED_KEYS:
            settings = settings_of(name, scenario)
            if not settings:
                scenarios = [s for k, s in SCENARIO_SETTINGS if k == name]
                raise LoadgenConfError(f"{path}, line {number}: {name} means nothing in {scenario} (LoadGen reads it for {', '.join(scenarios)} only)")
            for setting in settings:
                try:
                    setting.check(value)
                except ValueError as exc:
                    raise LoadgenConfError(f"{path}, line {number}: {key}: {exc}") from None
        entries[key] = value
    return entries


def lookup(entries: Mapping[str, str], model: str, scenario: str, key: str) -> str | None:
    """The value LoadGen would take for ``key`` (most specific entry first), or None."""
    for candidate in (f"{model}.{scenario}.{key}", f"*.{scenario}.{key}", f"{model}.*.{key}", f"*.*.{key}"):
        if candidate in entries:
            return entries[candidate]
    return None


def _value(text: str) -> int | float:
    """A value as written: integers exactly (64-bit seeds do not fit a float), others as floats."""
    if text.isdigit():
        return int(text)
    return int(text, 16) if text.lower().startswith("0x") else float(text)


def _number(text: str, setting: Setting) -> Any:
    """A checked value in LoadGen's unit (integers stay exact: 64-bit seeds do not fit a float)."""
    value = _value(text)
    if setting.scale != 1.0:
        value *= setting.scale
    return int(value) if setting.integer else value


def resolve(entries: Mapping[str, str], model: str, scenario: str) -> dict[str, Any]:
    """``TestSettings`` attribute -> value for the entries that apply to ``model`` in ``scenario``."""
    values: dict[str, Any] = {}
    for key, setting in SETTINGS.items():
        found = lookup(entries, model, scenario, key)
        if found is not None:
            values[setting.attribute] = _number(found, setting)
    for (key, key_scenario), setting in SCENARIO_SETTINGS.items():
        found = lookup(entries, model, scenario, key) if key_scenario == scenario else None
        if found is not None:  # (LoadGen also sets other scenarios' keys, which a run never reads)
            values[setting.attribute] = _number(found, setting)
    return values


@dataclass(frozen=True)
class ConfFiles:
    """The two settings files of a run: the benchmark's rules and the submitter's overrides."""

    mlperf_conf: Path = DEFAULT_MLPERF_CONF
    user_conf: Path | None = None

    def settings(self, model: str, scenario: str) -> dict[str, Any]:
        """The ``TestSettings`` values the two files give ``model`` in ``scenario`` (user.conf after
        mlperf.conf; raises :class:`LoadgenConfError` for a user.conf that sets a seed)."""
        values = resolve(parse_conf(self.mlperf_conf), model, scenario)
        if self.user_conf is not None:
            user = parse_conf(self.user_conf)
            ruled = sorted(key for key in MLPERF_CONF_ONLY if lookup(user, model, scenario, key) is not None)
            if ruled:
                raise LoadgenConfError(f"{self.user_conf}: {', '.join(ruled)} may only be set in mlperf.conf (LoadGen's rules)")
            values.update(resolve(user, model, scenario))
        return values


def apply_settings(test: Any, values: Mapping[str, Any]) -> None:
    """Set ``values`` on a LoadGen ``TestSettings``; an attribute this LoadGen lacks is an error
    (``server_constant_gen`` exists in the automotive build only)."""
    for attribute, value in values.items():
        if not hasattr(test, attribute):
            raise LoadgenConfError(f"the installed LoadGen has no setting {attribute!r} (the automotive LoadGen build has it)")
        setattr(test, attribute, type(getattr(test, attribute))(value))
