"""An MLPerf LoadGen system under test (SUT) for a :class:`ssd.inference.Detector`, and accuracy scoring.

As in MLPerf Automotive: the query sample library (QSL) holds the first ``count`` images of a
dataset split, preprocessed when LoadGen asks for them (its load / unload callbacks, untimed) and
staged on the detector's device (:func:`ssd.device.stage_on_device`: on a GPU, in its memory, else
pinned host memory when it is full). A timed query is the forward pass, decoding, and the copy of its
detections back to the host; decoding and preprocessing a frame are not in it, nor, when the samples
fit on the GPU, the copy of the input. Each sample's response is its detections as
float32 rows ``[x1, y1, x2, y2, label, score]`` (pixels of the original image, contiguous labels),
which LoadGen hex-encodes into ``mlperf_log_accuracy.json`` in accuracy mode;
:func:`score_accuracy_log` decodes that log and scores it with COCO mAP on torchmetrics'
thresholds, the MLPerf scorer.
"""
from __future__ import annotations

import array
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlperf_loadgen as lg
import numpy as np
import torch
from torch import Tensor

from ssd.atomic_file import write_atomically
from ssd.data.dataset import DetectionDataset
from ssd.device import stage_on_device
from ssd.errors import SSDError, parameter
from ssd.evaluation import EvalResult, detections_to_coco
from ssd.evaluation.coco_eval import Thresholds
from ssd.evaluation import score_detections
from ssd.inference import Detector
from ssd.loadgen_conf import MAX_GENERATED_QUERIES, MODEL_NAME, UINT64_MAX, ConfFiles, LoadgenConfError, apply_settings, check_seconds

logger = logging.getLogger(__name__)

SUT_SCENARIOS = ("SingleStream", "ConstantStream")  # what this SUT serves; ConstantStream needs the automotive build
AUTOMOTIVE_LOADGEN = (
    "MLPerf Automotive's LoadGen (5.0.15, which has ConstantStream): pip install "
    "'git+https://github.com/mlcommons/mlperf_automotive.git#subdirectory=loadgen'"
)
ACCURACY_LOG = "mlperf_log_accuracy.json"
SUMMARY_LOG = "mlperf_log_summary.txt"
ACCURACY_TXT = "accuracy.txt"
DETAIL_LOG = "mlperf_log_detail.txt"
TRACE_LOG = "mlperf_log_trace.json"  # empty unless LoadgenSettings.trace
LOADGEN_LOGS = (SUMMARY_LOG, DETAIL_LOG, ACCURACY_LOG, TRACE_LOG)  # what LoadGen writes into a run's folder
AUDIT_CONFIG = "audit.config"  # the file LoadGen applies on its own when it is in the working directory
WRITE_PROBE = ".ssd_write_probe"
ROW_WIDTH = 6  # x1, y1, x2, y2, label, score
NO_DETECTIONS = np.zeros((0, ROW_WIDTH), dtype=np.float32)


class LoadgenError(SSDError):
    """A LoadGen run that cannot be set up, or an accuracy log that cannot be read."""


def served_scenarios() -> tuple[str, ...]:
    """The scenarios this SUT serves that the installed LoadGen knows (read when asked, not at import)."""
    return tuple(name for name in SUT_SCENARIOS if hasattr(lg.TestScenario, name))


def _installed_loadgen() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"mlcommons-loadgen {version('mlcommons-loadgen')}"
    except PackageNotFoundError:
        return "the installed mlperf_loadgen"


@dataclass(frozen=True)
class LoadgenSettings:
    """What to run: scenario, accuracy or performance mode, samples, settings files and overrides.

    The settings files (``conf``: the benchmark's mlperf.conf by default, then a user.conf) give
    LoadGen the benchmark's rules for ``model_name``; the other fields, when set, override them for
    trial runs. ``count``: samples in the QSL (the first of the split; None = all).
    ``performance_sample_count``: samples LoadGen keeps loaded in performance mode (None = the
    files', 128; each 2160x3840 sample is ~100 MB of float32; at most ``count``).
    ``min_duration_s`` / ``min_query_count``: LoadGen's minimums. ``trace``: LoadGen's trace of every
    query and of its own threads (``mlperf_log_trace.json``, for a trace viewer); off, as in the reference
    harness (its ``--debug``), since LoadGen records it during the timed run and a submission holds none.
    """

    scenario: str = "SingleStream"
    accuracy: bool = False
    count: int | None = None
    performance_sample_count: int | None = None
    min_duration_s: float | None = None
    min_query_count: int | None = None
    conf: ConfFiles = field(default_factory=ConfFiles)
    model_name: str = MODEL_NAME
    trace: bool = False

    def __post_init__(self) -> None:
        served = served_scenarios()
        if self.scenario not in served:
            if self.scenario == "ConstantStream":
                raise LoadgenError(f"ConstantStream is not in {_installed_loadgen()}; it needs {AUTOMOTIVE_LOADGEN}")
            raise LoadgenError(f"scenario {self.scenario!r} is not served (available: {', '.join(served)})")
        if self.count is not None and self.count < 1:
            raise LoadgenError("the sample count must be at least 1")
        if self.performance_sample_count is not None and self.performance_sample_count < 1:
            raise LoadgenError("the performance sample count must be at least 1")
        if self.min_duration_s is not None:
            try:
                check_seconds(self.min_duration_s)
            except ValueError as exc:
                raise LoadgenError(f"the minimum duration: {exc}") from None
        if self.min_query_count is not None and not 1 <= self.min_query_count <= UINT64_MAX:
            raise LoadgenError(f"the minimum query count must be from 1 to 2^64 - 1, got {self.min_query_count}")
        self.test_settings()  # the files' values and the overrides together, checked before any model loads

    def test_settings(self) -> lg.TestSettings:
        """LoadGen's settings for this run (performance sample count as the files give it), checked:
        raises :class:`LoadgenError` for a run LoadGen cannot hold."""
        test = lg.TestSettings()
        test.scenario = getattr(lg.TestScenario, self.scenario)
        try:
            apply_settings(test, self.conf.settings(self.model_name, self.scenario))
        except LoadgenConfError as exc:
            raise LoadgenError(f"{exc}; {AUTOMOTIVE_LOADGEN}") from exc
        test.mode = lg.TestMode.AccuracyOnly if self.accuracy else lg.TestMode.PerformanceOnly
        if self.min_duration_s is not None:
            test.min_duration_ms = int(round(self.min_duration_s * 1000))
        if self.min_query_count is not None:
            test.min_query_count = self.min_query_count
        if not self.accuracy:  # an accuracy run generates one query per sample
            _check_generated_queries(test, self.scenario)
        return test


def _check_generated_queries(test: lg.TestSettings, scenario: str) -> None:
    """LoadGen generates a performance run's queries before it issues the first: refuse a run whose
    queries would not fit in memory (see :data:`ssd.loadgen_conf.MAX_GENERATED_QUERIES`)."""
    if scenario == "ConstantStream":
        latency_ns, multiplier = test.server_target_latency_ns, 1
        qps = 1e9 / latency_ns if latency_ns > 0 else test.server_target_qps
    else:
        qps, multiplier = 1e9 / max(test.single_stream_expected_latency_ns, 1), 2
    generated = max(test.min_query_count, multiplier * test.min_duration_ms / 1000 * qps)
    if generated > MAX_GENERATED_QUERIES:
        raise LoadgenError(
            f"a performance run under these settings generates {int(generated):,} queries before the first is issued "
            f"(min_query_count {test.min_query_count}, {multiplier} x min_duration {test.min_duration_ms / 1000:g} s at "
            f"{qps:g} queries/s), more than the {MAX_GENERATED_QUERIES:,} LoadGen can be given here; lower them"
        )


@dataclass(frozen=True)
class LoadgenRun:
    """Where LoadGen wrote its logs, how many samples the QSL held, and the summary's key: value lines."""

    output_dir: Path
    samples: int
    summary: dict[str, str]

    @property
    def accuracy_log(self) -> Path:
        """``mlperf_log_accuracy.json`` (holds detections in accuracy mode only)."""
        return self.output_dir / ACCURACY_LOG


def detection_rows(result: dict[str, Tensor]) -> np.ndarray:
    """A detector result as MLPerf's response rows: float32 ``[K, 6]`` of x1, y1, x2, y2, label, score."""
    columns = [result["boxes"].float(), result["labels"].float()[:, None], result["scores"].float()[:, None]]
    return torch.cat(columns, dim=1).numpy().astype(np.float32, copy=False)


class DetectorSUT:
    """The QSL's in-memory samples and the SUT's query handling, around one detector and dataset.

    An exception must not escape a LoadGen callback (LoadGen's threads then abort the process at
    exit), so a sample that cannot be loaded or run is answered with no detections and its error
    kept in :attr:`failures`, for :func:`run_loadgen` to raise once LoadGen has finished.
    """

    def __init__(self, detector: Detector, dataset: DetectionDataset):
        self.detector = detector
        self.dataset = dataset
        self.loaded: dict[int, tuple[Tensor, tuple[int, int]]] = {}
        self.failures: list[str] = []

    # -- QSL callbacks ------------------------------------------------------------------------------
    def load_samples(self, indices: Sequence[int]) -> None:
        """Decode and preprocess the samples LoadGen is about to query."""
        for index in indices:
            if index in self.loaded:
                continue
            try:
                image, size = self.dataset.network_input(index, self.detector.preprocess)
                self.loaded[index] = stage_on_device(image, self.detector.device), size
            except Exception as exc:  # see the class docstring
                self.failures.append(f"sample {index} ({self.dataset.image_path(index)}): {exc}")

    def unload_samples(self, indices: Sequence[int]) -> None:
        """Free the samples LoadGen is done with."""
        for index in indices:
            self.loaded.pop(index, None)

    # -- SUT callbacks ------------------------------------------------------------------------------
    def issue_queries(self, samples: Sequence[lg.QuerySample]) -> None:
        """Run the samples in batches of the detector's batch size and report each one's detections."""
        for start in range(0, len(samples), self.detector.batch_size):
            chunk = samples[start : start + self.detector.batch_size]
            rows = {sample.id: NO_DETECTIONS for sample in chunk}
            ready = [sample for sample in chunk if sample.index in self.loaded]
            try:
                if ready:
                    inputs = [self.loaded[sample.index] for sample in ready]
                    images = inputs[0][0][None] if len(inputs) == 1 else torch.stack([image for image, _ in inputs])
                    results = self.detector.detect(images, [size for _, size in inputs])
                    rows.update({sample.id: detection_rows(result) for sample, result in zip(ready, results)})
            except Exception as exc:  # see the class docstring
                self.failures.append(f"samples {[sample.index for sample in ready]}: {exc}")
            # LoadGen copies the data during QuerySamplesComplete; the buffers live until it returns
            buffers = [array.array("B", rows[sample.id].tobytes()) for sample in chunk]
            responses = [lg.QuerySampleResponse(sample.id, *buffer.buffer_info()) for sample, buffer in zip(chunk, buffers)]
            lg.QuerySamplesComplete(responses)

    def flush_queries(self) -> None:
        """Nothing is queued: every query completes within :meth:`issue_queries`."""


def samples_of(settings: LoadgenSettings, dataset: DetectionDataset) -> int:
    """The QSL's size: the first ``settings.count`` samples of the dataset (all when None)."""
    return len(dataset) if settings.count is None else min(settings.count, len(dataset))


def _test_settings(settings: LoadgenSettings, count: int) -> tuple[lg.TestSettings, int]:
    """LoadGen's settings for a run over ``count`` samples, and its performance sample count."""
    test = settings.test_settings()  # performance_sample_count_override: the files' value, 0 when they set none
    wanted = settings.performance_sample_count or test.performance_sample_count_override or count
    performance_samples = min(count, wanted)
    test.performance_sample_count_override = performance_samples
    return test, performance_samples


def read_summary(path: Path) -> dict[str, str]:
    """The ``key : value`` lines of a LoadGen summary (first occurrence of each key)."""
    summary: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            key, colon, value = line.partition(":")
            if colon and key.strip() and value.strip():
                summary.setdefault(key.strip(), value.strip())
    return summary


def run_loadgen(detector: Detector, dataset: DetectionDataset, settings: LoadgenSettings, output_dir: str | Path,
                audit_config: Path | None = None) -> LoadgenRun:
    """Run one LoadGen test of ``detector`` on ``dataset``, writing LoadGen's logs to ``output_dir``.

    ``audit_config``: a compliance test's ``audit.config`` for LoadGen to apply (see
    :mod:`ssd.compliance`). Without one LoadGen is given none, and an ``audit.config`` in the working
    directory, which LoadGen would otherwise apply on its own, is refused.
    """
    if audit_config is None and (Path.cwd() / AUDIT_CONFIG).exists():
        raise LoadgenError(f"{Path.cwd() / AUDIT_CONFIG}: LoadGen would override this run's settings with it (a compliance test's file); "
                           f"remove it, or run the compliance test through {parameter('audit')}")
    count = samples_of(settings, dataset)
    test, performance_samples = _test_settings(settings, count)
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    write_atomically(output / WRITE_PROBE, b"")  # LoadGen itself would give up on an unwritable folder without a word
    (output / WRITE_PROBE).unlink()
    log_output = lg.LogOutputSettings()
    log_output.outdir = str(output)
    log_output.copy_summary_to_stdout = False
    log_settings = lg.LogSettings()
    log_settings.log_output = log_output
    log_settings.enable_trace = settings.trace  # LoadGen's default is on

    sut = DetectorSUT(detector, dataset)
    sut_handle = lg.ConstructSUT(sut.issue_queries, sut.flush_queries)
    qsl_handle = lg.ConstructQSL(count, performance_samples, sut.load_samples, sut.unload_samples)
    try:
        logger.info("LoadGen %s, %s mode, %d samples", settings.scenario, "accuracy" if settings.accuracy else "performance", count)
        lg.StartTestWithLogSettings(sut_handle, qsl_handle, test, log_settings, str(audit_config) if audit_config else "")
    finally:
        lg.DestroyQSL(qsl_handle)
        lg.DestroySUT(sut_handle)
    if sut.failures:
        more = f" (and {len(sut.failures) - 1} more)" if len(sut.failures) > 1 else ""
        raise LoadgenError(f"{sut.failures[0]}{more}; those samples were answered with no detections, logs in {output}")
    if not (output / SUMMARY_LOG).is_file():
        raise LoadgenError(f"{output}: LoadGen wrote no {SUMMARY_LOG}; the run did not happen")
    return LoadgenRun(output, count, read_summary(output / SUMMARY_LOG))


def accuracy_log_entries(path: str | Path) -> list[tuple[int, bytes]]:
    """Every ``(sample index, response bytes)`` of ``mlperf_log_accuracy.json``, in the log's order
    (a sample LoadGen logged twice appears twice)."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except FileNotFoundError:
        raise LoadgenError(f"accuracy log not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LoadgenError(f"{path}: not a LoadGen accuracy log: {exc}") from exc
    if not isinstance(entries, list):
        raise LoadgenError(f"{path}: not a LoadGen accuracy log: expected a list of entries, got {type(entries).__name__}")
    decoded = []
    for entry in entries:
        try:
            decoded.append((int(entry["qsl_idx"]), bytes.fromhex(entry["data"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise LoadgenError(f"{path}: malformed entry {entry!r}") from exc
    return decoded


def read_accuracy_log(path: str | Path) -> dict[int, np.ndarray]:
    """Sample index -> detection rows ``[K, 6]`` float32 from ``mlperf_log_accuracy.json``.

    LoadGen may log a sample more than once; its first entry counts (the MLPerf scorer de-duplicates
    the same way).
    """
    rows: dict[int, np.ndarray] = {}
    for index, data in accuracy_log_entries(path):
        if len(data) % (4 * ROW_WIDTH):
            raise LoadgenError(f"{path}: sample {index}: {len(data)} bytes is not a whole number of [x1, y1, x2, y2, label, score] rows")
        rows.setdefault(index, np.frombuffer(data, dtype=np.float32).reshape(-1, ROW_WIDTH))
    return rows


def score_accuracy_log(path: str | Path, dataset: DetectionDataset, *, thresholds: Thresholds = "torchmetrics") -> tuple[EvalResult, int]:
    """COCO mAP of an accuracy log over the samples it holds, and the number of samples scored."""
    detections, image_ids = accuracy_log_detections(path, dataset)
    return score_detections(dataset.coco_ground_truth(), detections, image_ids, thresholds=thresholds), len(image_ids)


def accuracy_log_detections(path: str | Path, dataset: DetectionDataset) -> tuple[list[dict[str, Any]], list[int]]:
    """An accuracy log's detections in COCO results format (original-image pixels), and the image ids
    of the samples it holds (the images it is scored on), each checked against ``dataset``."""
    rows = read_accuracy_log(path)
    if not rows:
        raise LoadgenError(f"{path}: no samples in the accuracy log (was LoadGen run in {parameter('accuracy')} mode?)")
    bad = [index for index in rows if not 0 <= index < len(dataset)]
    if bad:
        raise LoadgenError(f"{path}: sample index {bad[0]} is outside the dataset's {len(dataset)} images")
    indices = sorted(rows)
    for index in indices:
        _check_rows(path, index, rows[index], dataset.num_classes)
    dataset.require_ground_truth(indices)
    image_ids = [int(dataset.annotations.image_ids[index]) for index in indices]
    outputs = [
        {"boxes": torch.from_numpy(rows[i][:, :4].copy()), "labels": torch.from_numpy(rows[i][:, 4].round().astype(np.int64)),
         "scores": torch.from_numpy(rows[i][:, 5].copy())}
        for i in indices
    ]
    return detections_to_coco(outputs, image_ids, dataset.category_of_label), image_ids


def _check_rows(path: Path | str, index: int, rows: np.ndarray, num_classes: int) -> None:
    """Refuse rows no detector writes: a value that is not finite, or a label that is not a whole
    number from 1 to ``num_classes - 1`` (MLPerf's scorer would truncate 3.7 to 3; nothing here guesses)."""
    if not np.isfinite(rows).all():
        raise LoadgenError(f"{path}: sample {index}: a detection holds a value that is not finite")
    labels = rows[:, 4]
    bad = np.flatnonzero((labels != np.round(labels)) | (labels < 1) | (labels > num_classes - 1))
    if len(bad):
        raise LoadgenError(f"{path}: sample {index}: detection label {labels[bad[0]]:g} is not one of the classes 1 to {num_classes - 1} "
                           "(rows are [x1, y1, x2, y2, label, score] float32)")


def accuracy_report(scored: EvalResult, samples: int, log: Path) -> str:
    """The text of a run's ``accuracy.txt``: what was scored, the COCO table, and the ``mAP = `` line."""
    return f"accuracy: {samples} samples scored from {log}\n{scored.table()}\nmAP = {scored.map:.5f}\n"
