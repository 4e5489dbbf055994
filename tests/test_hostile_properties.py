"""Property-based hostile inputs (hypothesis): flags, LoadGen settings files and the record formats
the project reads back. Whatever is generated, the outcome is one of the promised ones: a value the
flag or setting can mean, or the project's own error naming the problem; never another exception.
``make test`` runs the ``default`` profile; ``pytest -m hostile --hypothesis-profile=sweep`` sweeps
far more cases."""
from __future__ import annotations

import json
import math
import pickle

import mlperf_loadgen as lg
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from support import numeric_flags

from ssd.cli.main import build_parser
from ssd.data.preprocessed import load_frame
from ssd.data.problems import DataError
from ssd.loadgen import LoadgenError, LoadgenSettings, read_accuracy_log
from ssd.loadgen_conf import KNOWN_MODELS, KNOWN_SCENARIOS, SCENARIO_KEYS, SETTINGS, ConfFiles, LoadgenConfError, parse_conf
from ssd.prediction_log import PredictionLog, PredictionLogError, finished_video_frames, header_line
from ssd.run_record import RunRecordError, read_record

NUMBER_TEXT = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["nan", "inf", "-inf", "1e400", "0x10", "010", "1_000", " 5", "", "١٢", "1e-400", "-0"]),
    st.text(max_size=8),
)

FLAGS = numeric_flags()


@pytest.mark.hostile("numbers")
@given(flag=st.sampled_from(FLAGS), text=NUMBER_TEXT)
def test_a_numeric_flag_takes_a_value_in_its_range_or_is_one_usage_error(flag, text: str):
    words, option, number = flag
    parser = build_parser()
    command = parser
    for word in words:
        command = next(a for a in command._actions if hasattr(a, "choices") and isinstance(a.choices, dict) and word in a.choices).choices[word]
    required = [part for action in command._actions if action.required and action.option_strings
                for part in (action.option_strings[0], action.choices[0] if action.choices else "x")]
    dest = next(action.dest for action in command._actions if option in action.option_strings)
    try:
        value = getattr(parser.parse_args([*words, *required, f"{option}={text}"]), dest)
    except SystemExit as exited:
        assert exited.code == 2
        return
    value = value[0] if isinstance(value, list) else value
    assert isinstance(value, number.kind) and math.isfinite(value)
    assert number.low is None or (value > number.low if number.low_open else value >= number.low)
    assert number.high is None or (value < number.high if number.high_open else value <= number.high)


CONF_KEYS = sorted(SETTINGS) + sorted(SCENARIO_KEYS) + ["min_querycount", "mode", "group_sizes"]
CONF_LINE = st.tuples(
    st.sampled_from([*KNOWN_MODELS, "*", "sdd", "ssd-x"]), st.sampled_from([*KNOWN_SCENARIOS, "*", "Server", "SingleSteam"]),
    st.sampled_from(CONF_KEYS), NUMBER_TEXT,
).map(lambda parts: f"{parts[0]}.{parts[1]}.{parts[2]} = {parts[3]}")


@pytest.mark.hostile("MLPerf files and settings")
@given(lines=st.lists(st.one_of(CONF_LINE, st.text(max_size=30)), max_size=6))
def test_no_settings_file_the_benchmark_cannot_accept_reaches_loadgen(tmp_path_factory, lines: list[str]):
    path = tmp_path_factory.mktemp("conf") / "user.conf"
    path.write_text("\n".join(line.replace("\n", " ").replace("\r", " ") for line in lines) + "\n", encoding="utf-8", errors="replace")
    try:
        parse_conf(path)
        settings = LoadgenSettings(conf=ConfFiles(user_conf=path))
    except (LoadgenConfError, LoadgenError):
        return
    test = settings.test_settings()  # what would reach LoadGen: within what it can hold
    assert 0 < test.single_stream_target_latency_percentile <= 1
    assert test.single_stream_expected_latency_ns >= 1 and test.min_duration_ms * 2 * 10**6 < 2**63
    assert isinstance(test.mode, lg.TestMode)


JSON_VALUE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12,
)
RECORD_LIKE = st.fixed_dictionaries(
    {}, optional={"image": JSON_VALUE, "output": JSON_VALUE, "height": JSON_VALUE, "width": JSON_VALUE, "detections": JSON_VALUE,
                  "source": JSON_VALUE, "frame": JSON_VALUE, "pts": JSON_VALUE},
)


@pytest.mark.hostile("malformed records")
@given(lines=st.lists(st.one_of(JSON_VALUE.map(json.dumps), RECORD_LIKE.map(json.dumps), st.text(max_size=20)), max_size=5),
       with_header=st.booleans())
def test_a_prediction_log_read_back_is_checked_like_fresh_input(tmp_path_factory, lines: list[str], with_header: bool):
    folder = tmp_path_factory.mktemp("log")
    run = {"model_sha256": "0" * 64}
    text = (header_line(run) if with_header else "") + "".join(line.replace("\n", " ") + "\n" for line in lines)
    for name in ("images.jsonl", "video.jsonl"):
        (folder / name).write_text(text, encoding="utf-8", errors="replace")
    try:
        log = PredictionLog(folder / "images.jsonl", resume=True, run=run)
        log.close()
        assert all(isinstance(record["detections"], list) for record in log.finished.values())
        frames = finished_video_frames(folder / "video.jsonl", run)
        assert [frame["frame"] for frame in frames] == list(range(len(frames)))
    except PredictionLogError:
        assert not with_header or text.splitlines()[0] != header_line(run).strip()


@pytest.mark.hostile("malformed records")
@given(content=st.one_of(JSON_VALUE.map(json.dumps), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))))
def test_a_run_record_or_an_accuracy_log_of_any_content_is_the_projects_own_error(tmp_path_factory, content: str):
    folder = tmp_path_factory.mktemp("run")
    (folder / "ssd_run.json").write_text(content)
    (folder / "log.json").write_text(content)
    with pytest.raises(RunRecordError):
        read_record(folder)
    try:
        read_accuracy_log(folder / "log.json")
    except LoadgenError:
        pass


ARRAYS = st.one_of(
    st.sampled_from([np.float32, np.float64, np.int64, np.int32, np.uint8, np.bool_, np.complex64, np.float16]).flatmap(
        lambda dtype: st.lists(st.integers(0, 3), min_size=0, max_size=3).map(lambda shape: np.zeros(shape, dtype))),
    JSON_VALUE,
)


@pytest.mark.hostile("MLPerf files and settings")
@given(frame=st.one_of(st.fixed_dictionaries({"img": ARRAYS, "gt_boxes": ARRAYS}), JSON_VALUE), protocol=st.sampled_from([2, 4, 5]))
def test_a_preprocessed_frame_of_any_content_loads_checked_or_is_a_data_error(tmp_path_factory, frame, protocol: int):
    path = tmp_path_factory.mktemp("frame") / "val_0.pkl"
    path.write_bytes(pickle.dumps(frame, protocol=protocol))
    try:
        loaded = load_frame(path)
    except DataError as exc:
        assert str(path) in str(exc)
        return
    assert loaded["img"].dtype == np.float32 and loaded["img"].ndim == 4 and loaded["gt_boxes"].dtype == np.float32
    assert loaded["gt_boxes"].shape[1:] == (7,) and np.isfinite(loaded["gt_boxes"]).all()
