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
_KEY = re.compile(r"^([A-Za-z0-9_\-]+|\*)\.([A-Za-z]+|\*)\.([a-z0-9_]+)$")
_NUMBER = re.compile(r"^(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$|^0[xX][0-9a-fA-F]+$")  # LoadGen's values are never negative
LIMIT = 2**64  # LoadGen's integer settings are uint64


class LoadgenConfError(SSDError):
    """A settings file that cannot be read or applied."""


@dataclass(frozen=True)
class Setting:
    """How one conf key reaches ``TestSettings``: its attribute, the factor from the file's unit
    (percent -> fraction, ms -> ns), whether it is an integer, and the scenario it is looked up for
    (None: the scenario being run)."""

    attribute: str
    scale: float = 1.0
    integer: bool = True
    scenario: str | None = None


# the keys of LoadGen's FromConfig (automotive build, which adds ConstantStream on the server settings)
SEED_SETTINGS = {
    "qsl_rng_seed": Setting("qsl_rng_seed"),
    "sample_index_rng_seed": Setting("sample_index_rng_seed"),
    "schedule_rng_seed": Setting("schedule_rng_seed"),
}
MLPERF_CONF_ONLY = {
    **SEED_SETTINGS,
    "accuracy_log_probability": Setting("accuracy_log_probability", 0.01, integer=False),
    "test05": Setting("test05"),
    "test05_qsl_rng_seed": Setting("test05_qsl_rng_seed"),
    "test05_sample_index_rng_seed": Setting("test05_sample_index_rng_seed"),
    "test05_schedule_rng_seed": Setting("test05_schedule_rng_seed"),
}
SETTINGS = {
    **MLPERF_CONF_ONLY,
    "min_duration": Setting("min_duration_ms"),
    "max_duration": Setting("max_duration_ms"),
    "min_query_count": Setting("min_query_count"),
    "max_query_count": Setting("max_query_count"),
    "performance_sample_count_override": Setting("performance_sample_count_override"),
    "performance_issue_unique": Setting("performance_issue_unique"),
    "performance_issue_same": Setting("performance_issue_same"),
    "performance_issue_same_index": Setting("performance_issue_same_index"),
    "sample_concatenate_permutation": Setting("sample_concatenate_permutation"),
    "print_timestamps": Setting("print_timestamps"),
    "accuracy_log_rng_seed": Setting("accuracy_log_rng_seed"),
    "accuracy_log_sampling_target": Setting("accuracy_log_sampling_target"),
}
# keys whose meaning depends on the scenario they are written for: (key, scenario) -> setting
SCENARIO_SETTINGS = {
    ("target_latency_percentile", "SingleStream"): Setting("single_stream_target_latency_percentile", 0.01, integer=False),
    ("target_latency", "SingleStream"): Setting("single_stream_expected_latency_ns", 1e6, integer=False),
    ("target_latency_percentile", "MultiStream"): Setting("multi_stream_target_latency_percentile", 0.01, integer=False),
    ("target_latency", "MultiStream"): Setting("multi_stream_expected_latency_ns", 1e6, integer=False),
    ("samples_per_query", "MultiStream"): Setting("multi_stream_samples_per_query"),
    ("target_latency_percentile", "ConstantStream"): Setting("server_target_latency_percentile", 0.01, integer=False),
    ("target_latency", "ConstantStream"): Setting("server_target_latency_ns", 1e6),
    ("target_qps", "ConstantStream"): Setting("server_target_qps", integer=False),
    ("coalesce_queries", "ConstantStream"): Setting("server_coalesce_queries"),
    ("max_async_queries", "ConstantStream"): Setting("server_max_async_queries"),
    ("constant_gen", "ConstantStream"): Setting("server_constant_gen"),
    ("target_qps", "Offline"): Setting("offline_expected_qps", integer=False),
}
# keys of the benchmark's files that this SUT has no use for (other models' grouped QSL, token
# latencies of language models, a test mode ``ssd loadgen --accuracy`` chooses, LoadGen's unused
# target_duration): accepted and left alone
IGNORED_KEYS = frozenset({
    "mode", "target_duration", "use_grouped_qsl", "group_sizes", "use_token_latencies", "ttft_latency", "tpot_latency",
    "infer_token_latencies", "token_latency_scaling_factor",
})
SCENARIO_KEYS = frozenset(key for key, _ in SCENARIO_SETTINGS)


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
        name = match.group(3)
        if name not in SETTINGS and name not in SCENARIO_KEYS and name not in IGNORED_KEYS:
            raise LoadgenConfError(f"{path}, line {number}: unknown LoadGen setting {name!r}")
        if name not in IGNORED_KEYS and not (_NUMBER.match(value) and _value(value) < LIMIT):
            raise LoadgenConfError(f"{path}, line {number}: {key} must be a number from 0 to 2^64 - 1, got {value!r}")
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
    value = _value(text)
    if setting.scale != 1.0:
        value *= setting.scale
    if setting.integer and value >= LIMIT:
        raise LoadgenConfError(f"{text} for {setting.attribute} is beyond LoadGen's range once in its unit (x{setting.scale:g})")
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
