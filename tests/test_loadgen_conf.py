"""LoadGen settings files: the format, the precedence of entries, the benchmark's defaults, errors."""
from __future__ import annotations

import types
from pathlib import Path

import mlperf_loadgen as lg
import pytest

import ssd.loadgen
from ssd.loadgen import LoadgenError, LoadgenSettings, _test_settings, served_scenarios
from ssd.loadgen_conf import DEFAULT_MLPERF_CONF, MAX_DURATION_MS, ConfFiles, check_seconds, LoadgenConfError, apply_settings, lookup, parse_conf, resolve


def write(tmp_path: Path, text: str, name: str = "x.conf") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_most_specific_entry_wins_and_a_later_line_replaces_an_earlier_one(tmp_path):
    entries = parse_conf(write(tmp_path, """
        # a comment line
        *.*.min_query_count = 1
        ssd.*.min_query_count = 2      # a trailing comment
        *.SingleStream.min_query_count = 3
        ssd.SingleStream.min_query_count = 4
        uniad.SingleStream.min_duration = 9
        *.*.min_duration = 5
        *.*.min_duration = 6
    """))
    assert lookup(entries, "ssd", "SingleStream", "min_query_count") == "4"
    assert lookup(entries, "uniad", "SingleStream", "min_query_count") == "3"  # *.scenario before model.*
    assert lookup(entries, "ssd", "Offline", "min_query_count") == "2"
    assert lookup(entries, "uniad", "Offline", "min_query_count") == "1"
    assert lookup(entries, "ssd", "SingleStream", "min_duration") == "6"
    assert lookup(entries, "uniad", "SingleStream", "min_duration") == "9"
    assert lookup(entries, "ssd", "SingleStream", "max_duration") is None


def test_the_largest_seed_fits(tmp_path):
    values = resolve(parse_conf(write(tmp_path, "*.*.qsl_rng_seed = 18446744073709551615\n*.*.schedule_rng_seed = 2085463073848966841\n")),
                     "ssd", "SingleStream")
    assert values == {"qsl_rng_seed": 2**64 - 1, "schedule_rng_seed": 2085463073848966841}  # exact: not through a float
    test = lg.TestSettings()
    apply_settings(test, values)
    assert (test.qsl_rng_seed, test.schedule_rng_seed) == (2**64 - 1, 2085463073848966841)


def test_units_follow_loadgen(tmp_path):
    values = resolve(parse_conf(write(tmp_path, """
        *.SingleStream.target_latency_percentile = 99.9
        *.SingleStream.target_latency = 12.5
        *.*.min_duration = 0x10
        *.*.accuracy_log_probability = 50
    """)), "ssd", "SingleStream")
    assert values == {
        "single_stream_target_latency_percentile": pytest.approx(0.999), "single_stream_expected_latency_ns": pytest.approx(12.5e6),
        "min_duration_ms": 16, "accuracy_log_probability": pytest.approx(0.5),
    }


def test_the_shipped_defaults_are_the_benchmarks():
    single = ConfFiles().settings("ssd", "SingleStream")
    assert single == {
        "qsl_rng_seed": 1215947953, "sample_index_rng_seed": 295229089, "schedule_rng_seed": 1380859451,
        "performance_sample_count_override": 128, "single_stream_target_latency_percentile": pytest.approx(0.999),
        "min_duration_ms": 600000, "min_query_count": 6636, "single_stream_expected_latency_ns": pytest.approx(10e6),
    }
    constant = ConfFiles().settings("ssd", "ConstantStream")
    assert constant == {  # target_latency 0: LoadGen then issues queries at target_qps (v1.0's mlperf.conf)
        "qsl_rng_seed": 1215947953, "sample_index_rng_seed": 295229089, "schedule_rng_seed": 1380859451,
        "performance_sample_count_override": 128, "server_target_qps": 15.0, "server_target_latency_ns": 0,
        "server_target_latency_percentile": pytest.approx(0.999), "min_query_count": 100000, "min_duration_ms": 600000,
        "server_constant_gen": 1,
    }
    assert ConfFiles().settings("deeplabv3plus", "SingleStream").get("performance_sample_count_override") == 128
    assert DEFAULT_MLPERF_CONF.is_file()


def test_applied_to_loadgens_settings():
    test = lg.TestSettings()
    apply_settings(test, ConfFiles().settings("ssd", "SingleStream"))
    assert (test.qsl_rng_seed, test.min_query_count, test.performance_sample_count_override) == (1215947953, 6636, 128)
    assert test.single_stream_target_latency_percentile == pytest.approx(0.999)
    with pytest.raises(LoadgenConfError, match="no setting 'nonexistent'"):
        apply_settings(test, {"nonexistent": 1})


@pytest.mark.parametrize(("line", "message"), [
    ("ssd.SingleStream.min_query_count 5", "line 2: expected 'model.scenario.key = value'"),
    ("ssd.min_query_count = 5", "line 2: expected"),
    ("ssd.SingleStream.min_query_count =", "line 2: expected"),
    ("ssd.SingleStream.min_querycount = 5", "line 2: unknown LoadGen setting 'min_querycount'"),
    ("sdd.SingleStream.min_query_count = 5", "line 2: unknown model 'sdd'"),  # LoadGen would ignore the line
    ("ssd.SingleSteam.min_query_count = 5", "line 2: unknown scenario 'SingleSteam'"),
    ("ssd.Offline.target_latency = 5", "line 2: target_latency means nothing in Offline"),
    ("ssd.SingleStream.min_query_count = five", "line 2: ssd.SingleStream.min_query_count: a count is a whole number .*, got 'five'"),
    ("ssd.SingleStream.min_query_count = -5", "line 2: .* got '-5'"),
    ("ssd.SingleStream.min_query_count = 10.5", "line 2: .* got '10.5'"),  # LoadGen would read 10
    ("ssd.SingleStream.min_query_count = 1e3", "line 2: .* got '1e3'"),  # LoadGen would read 1
    ("ssd.SingleStream.min_duration = 0600000", "line 2: .* got '0600000'"),  # LoadGen would read octal
    ("*.*.qsl_rng_seed = 18446744073709551616", r"line 2: \*.\*.qsl_rng_seed: a seed must be from 0 to 2\^64 - 1, got 18446744073709551616"),
    ("ssd.SingleStream.min_duration = 1e30", "line 2: .* got '1e30'"),
    ("ssd.SingleStream.target_latency_percentile = nan", "line 2: .* got 'nan'"),
    ("ssd.SingleStream.target_latency = inf", "line 2: .* got 'inf'"),
])
@pytest.mark.hostile("MLPerf files and settings")
def test_a_bad_line_is_an_error_naming_file_and_line(tmp_path, line, message):
    path = write(tmp_path, f"*.*.min_duration = 1\n{line}\n")
    with pytest.raises(LoadgenConfError, match=message) as raised:
        parse_conf(path)
    assert str(path) in str(raised.value)


def test_keys_of_other_models_and_loadgen_modes_are_accepted_and_ignored(tmp_path):
    path = write(tmp_path, "bevformer.*.use_grouped_qsl = 1\nbevformer.*.group_sizes = 39, 40, 40\n*.ConstantStream.target_duration = 0\n")
    assert resolve(parse_conf(path), "bevformer", "SingleStream") == {}


def test_a_user_conf_may_not_set_seeds_but_may_override_the_rest(tmp_path):
    user = write(tmp_path, "ssd.SingleStream.min_query_count = 10\n", "user.conf")
    assert ConfFiles(user_conf=user).settings("ssd", "SingleStream")["min_query_count"] == 10
    seeded = write(tmp_path, "ssd.*.schedule_rng_seed = 7\n", "seeded.conf")
    with pytest.raises(LoadgenConfError, match="schedule_rng_seed may only be set in mlperf.conf"):
        ConfFiles(user_conf=seeded).settings("ssd", "SingleStream")
    other_model = write(tmp_path, "bevformer.*.schedule_rng_seed = 7\n", "other.conf")  # not this model's
    assert ConfFiles(user_conf=other_model).settings("ssd", "SingleStream")["schedule_rng_seed"] == 1380859451
    mlperf = write(tmp_path, "*.*.qsl_rng_seed = 11\n", "mlperf.conf")  # another mlperf.conf may
    assert ConfFiles(mlperf, user).settings("ssd", "SingleStream") == {"qsl_rng_seed": 11, "min_query_count": 10}


def test_performance_sample_count_is_the_settings_capped_at_the_samples():
    assert _test_settings(LoadgenSettings(), 500)[1] == 128
    assert _test_settings(LoadgenSettings(), 20)[1] == 20
    test, samples = _test_settings(LoadgenSettings(performance_sample_count=7), 20)
    assert samples == test.performance_sample_count_override == 7


class AutomotiveTestSettings(lg.TestSettings):
    """The automotive LoadGen build's TestSettings, simulated over PyPI's: it adds server_constant_gen."""

    server_constant_gen = False


def loadgen_build(automotive: bool) -> types.SimpleNamespace:
    """The installed LoadGen as the automotive build (ConstantStream, on its server settings) or PyPI's (none)."""
    scenarios = {"SingleStream": lg.TestScenario.SingleStream}
    if automotive:
        scenarios["ConstantStream"] = getattr(lg.TestScenario, "ConstantStream", lg.TestScenario.Server)
    settings = AutomotiveTestSettings if automotive and not hasattr(lg.TestSettings(), "server_constant_gen") else lg.TestSettings
    return types.SimpleNamespace(TestScenario=types.SimpleNamespace(**scenarios), TestSettings=settings, TestMode=lg.TestMode)


@pytest.mark.parametrize("automotive", [True, False])
def test_constant_stream_is_offered_only_where_loadgen_has_it(automotive: bool, monkeypatch):
    """Both builds on every machine: the installed one as it is, the other simulated."""
    if automotive != hasattr(lg.TestScenario, "ConstantStream"):
        monkeypatch.setattr(ssd.loadgen, "lg", loadgen_build(automotive))
    if automotive:
        assert served_scenarios() == ("SingleStream", "ConstantStream")
        test, _ = _test_settings(LoadgenSettings(scenario="ConstantStream"), 200)
        assert test.server_target_qps == 15.0 and test.server_constant_gen and test.min_query_count == 100_000
    else:
        assert served_scenarios() == ("SingleStream",)
        with pytest.raises(LoadgenError, match=r"ConstantStream is not in .*pip install .*mlperf_automotive.*loadgen"):
            LoadgenSettings(scenario="ConstantStream")


def _boundary(tmp_path: Path, line: str, refused: bool, message: str = "") -> None:
    path = write(tmp_path, f"{line}\n")
    if refused:
        with pytest.raises(LoadgenConfError, match=rf"x.conf, line 1: .*{message}"):
            parse_conf(path)
    else:
        parse_conf(path)


@pytest.mark.parametrize(("line", "refused"), [
    # percentiles: (0, 100] ("Result is: VALID" at 0 or beyond 100 otherwise)
    ("ssd.SingleStream.target_latency_percentile = 0", True), ("ssd.SingleStream.target_latency_percentile = 0.0001", False),
    ("ssd.SingleStream.target_latency_percentile = 100", False), ("ssd.SingleStream.target_latency_percentile = 100.0001", True),
    ("*.ConstantStream.target_latency_percentile = 0", True), ("*.*.target_latency_percentile = 101", True),
    # a probability in percent: [0, 100]
    ("*.*.accuracy_log_probability = 0", False), ("*.*.accuracy_log_probability = 100", False), ("*.*.accuracy_log_probability = 100.5", True),
    # durations: signed 64-bit nanoseconds, twice the minimum duration generated
    (f"*.*.min_duration = {MAX_DURATION_MS}", False), (f"*.*.min_duration = {MAX_DURATION_MS + 1}", True),
    (f"*.*.max_duration = {MAX_DURATION_MS + 1}", True), ("*.*.min_duration = 0", False),
    # an expected latency: at least 1 ns, at most the longest duration
    ("*.SingleStream.target_latency = 0", True), ("*.SingleStream.target_latency = 0.000001", False),
    ("*.SingleStream.target_latency = 0.0000009", True), (f"*.SingleStream.target_latency = {MAX_DURATION_MS}", False),
    (f"*.SingleStream.target_latency = {MAX_DURATION_MS + 1}", True), ("*.*.target_latency = 0", True),  # * includes SingleStream
    ("ssd.ConstantStream.target_latency = 0", False),  # 0: use target_qps
    (f"ssd.ConstantStream.target_latency = {MAX_DURATION_MS + 1}", True),
    # queries per second: above 0, at most one per ns
    ("ssd.ConstantStream.target_qps = 0", True), ("ssd.ConstantStream.target_qps = 0.001", False),
    ("ssd.ConstantStream.target_qps = 1000000000", False), ("ssd.ConstantStream.target_qps = 1000000001", True),
    ("ssd.Offline.target_qps = 0", True),
    # switches: 0 or 1 (LoadGen reads 2 as off for some keys and on for others)
    ("*.*.test05 = 1", False), ("*.*.test05 = 2", True), ("*.ConstantStream.constant_gen = 2", True),
    # LoadGen's int and counts
    (f"*.ConstantStream.max_async_queries = {2**31 - 1}", False), (f"*.ConstantStream.max_async_queries = {2**31}", True),
    ("*.MultiStream.samples_per_query = 0", True), ("*.MultiStream.samples_per_query = 1", False),
    (f"*.*.min_query_count = {2**64 - 1}", False), (f"*.*.min_query_count = {2**64}", True),
])
@pytest.mark.hostile("MLPerf files and settings")
def test_every_setting_is_held_to_the_range_its_meaning_allows(tmp_path: Path, line: str, refused: bool):
    _boundary(tmp_path, line, refused)


@pytest.mark.parametrize(("user_conf", "refused"), [
    ("*.SingleStream.min_duration = 0\nssd.SingleStream.min_query_count = 100000000", False),
    ("*.SingleStream.min_duration = 0\nssd.SingleStream.min_query_count = 100000001", True),
    ("ssd.SingleStream.target_latency = 0.012", False),  # 2 x 600 s at 83,333 queries/s: 1e8
    ("ssd.SingleStream.target_latency = 0.0119", True),
    ("ssd.ConstantStream.target_qps = 166666", False),  # 600 s x 166,666 queries/s: < 1e8
    ("ssd.ConstantStream.target_qps = 166667", True),
])
@pytest.mark.hostile("MLPerf files and settings")
def test_a_run_loadgen_cannot_hold_in_memory_is_refused(tmp_path: Path, user_conf: str, refused: bool, monkeypatch):
    """LoadGen generates every query up front: min_query_count, or (multiplier x min duration x rate)."""
    scenario = "ConstantStream" if "ConstantStream" in user_conf else "SingleStream"
    conf = ConfFiles(user_conf=write(tmp_path, user_conf + "\n", "user.conf"))
    if scenario not in served_scenarios():
        monkeypatch.setattr(ssd.loadgen, "lg", loadgen_build(automotive=True))
    if refused:
        with pytest.raises(LoadgenError, match=r"generates 100,\d{3},\d{3} queries before the first is issued"):
            LoadgenSettings(scenario=scenario, conf=conf)
    else:
        LoadgenSettings(scenario=scenario, conf=conf)
    LoadgenSettings(scenario=scenario, conf=conf, accuracy=True)  # an accuracy run generates one query per sample


@pytest.mark.parametrize(("seconds", "refused"), [
    (0.0, False), (-0.001, True), (MAX_DURATION_MS / 1000, False), (MAX_DURATION_MS / 1000 * 1.001, True),
    (float("nan"), True), (float("inf"), True),
])
@pytest.mark.hostile("MLPerf files and settings")
def test_the_trial_durations_are_held_to_the_same_range(seconds: float, refused: bool):
    if refused:
        with pytest.raises(ValueError, match="must be from 0 to"):
            check_seconds(seconds)
        with pytest.raises(LoadgenError, match="the minimum duration: must be from 0 to"):
            LoadgenSettings(min_duration_s=seconds, min_query_count=1)
    else:
        check_seconds(seconds)
        LoadgenSettings(min_duration_s=seconds, min_query_count=1, accuracy=True)  # an accuracy run generates no more
