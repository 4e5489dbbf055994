"""A finished accuracy run, performance run and TEST01 run laid out as an MLPerf submission tree.

The layout of MLPerf Automotive's submissions (SPEC, section 10), for one system and scenario::

    results/<system>/ssd/<scenario>/accuracy/            the accuracy run's logs and accuracy.txt
    results/<system>/ssd/<scenario>/performance/run_1/   the performance run's logs
    compliance/<system>/ssd/<scenario>/TEST01/           verify_*.txt, accuracy/, performance/run_1/
    measurements/<system>/ssd/<scenario>/                mlperf.conf, user.conf, README.md, <system>_ssd_<scenario>.json
    systems/<system>.json                                the system description

Logs are taken only from runs whose records (:mod:`ssd.run_record`) show one model, config,
decoding, data and settings files, and the TEST01 run must pass against the two others (verified
again here). The user.conf written is the one the runs read, with the trial flags they ran under
added as the lines they stand for, so the tree says what ran. The tree is built beside ``out`` and
renamed into place: it appears whole or not at all, and an existing ``out`` is never written into.
"""
from __future__ import annotations

import json
import os
import platform
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ssd.compliance import VERIFY_ACCURACY, VERIFY_PERFORMANCE, audit_verdict
from ssd.errors import SSDError
from ssd.loadgen import ACCURACY_LOG, ACCURACY_TXT, DETAIL_LOG, SUMMARY_LOG
from ssd.loadgen_conf import MODEL_NAME
from ssd.run_record import RunRecord, read_record

IMPLEMENTATION = "ssd"
TEST = "TEST01"  # the compliance test MLPerf Automotive requires of ssd
LOGS = (ACCURACY_LOG, DETAIL_LOG, SUMMARY_LOG)
_SYSTEM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# the system description's fields (MLPerf's system JSON); those the machine cannot tell are left "" to fill in
SYSTEM_FIELDS = (
    "submitter", "division", "status", "system_type", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count", "host_processor_frequency",
    "host_processor_caches", "host_processor_interconnect", "host_memory_capacity", "host_memory_configuration",
    "host_storage_type", "host_storage_capacity", "host_networking", "host_networking_topology",
    "accelerators_per_node", "accelerator_model_name", "accelerator_frequency", "accelerator_host_interconnect",
    "accelerator_interconnect", "accelerator_interconnect_topology", "accelerator_memory_capacity",
    "accelerator_memory_configuration", "accelerator_on-chip_memories", "cooling", "hw_notes",
    "framework", "operating_system", "other_software_stack", "sw_notes",
)


class SubmissionError(SSDError):
    """Runs that cannot make a submission tree, or a tree that would overwrite one."""


@dataclass(frozen=True)
class SystemDescription:
    """What the submitter says of the system; the rest is read from the machine where it can be."""

    name: str
    submitter: str
    division: str = "closed"
    status: str = "available"
    system_type: str = ""
    fields: dict[str, Any] = field(default_factory=dict)  # overrides of any field, e.g. from a JSON file

    def __post_init__(self) -> None:
        if not _SYSTEM_NAME.match(self.name):
            raise SubmissionError(f"system name {self.name!r}: letters, digits, '_', '.' and '-' only (it names folders and files)")
        if self.division not in ("closed", "open"):
            raise SubmissionError(f"division {self.division!r}: closed or open")
        unknown = sorted(set(self.fields) - set(SYSTEM_FIELDS))
        if unknown:
            raise SubmissionError(f"unknown system description fields {', '.join(unknown)} (MLPerf's: {', '.join(SYSTEM_FIELDS)})")


@dataclass(frozen=True)
class Submission:
    """A laid-out tree: where, and the system fields left for the submitter to fill in."""

    root: Path
    unfilled: list[str]


def lay_out_submission(system: SystemDescription, accuracy_run: str | Path, performance_run: str | Path, audit_run: str | Path,
                       out: str | Path) -> Submission:
    """Lay out the three runs as the submission tree of ``system`` under ``out`` (which must not exist)."""
    out = Path(out)
    if out.exists() or out.is_symlink():
        raise SubmissionError(f"{out}: already exists; a submission tree is written only into a new folder")
    runs = {"accuracy": Path(accuracy_run), "performance": Path(performance_run), TEST: Path(audit_run)}
    # the three runs' modes and records are checked against each other there (ssd.compliance.check_audited_runs)
    verdict = audit_verdict(TEST, runs["accuracy"], runs["performance"], runs[TEST])
    if not verdict.passed:
        raise SubmissionError(f"{runs[TEST]}: {TEST} does not pass against these runs: {' / '.join(verdict.summary().splitlines()[:2])}")
    if not (runs["accuracy"] / ACCURACY_TXT).is_file():
        raise SubmissionError(f"{runs['accuracy']}: no {ACCURACY_TXT} (the accuracy run's score)")
    records = {name: read_record(folder) for name, folder in runs.items()}
    scenario = records["accuracy"].scenario
    description, unfilled = _system_json(system, records["performance"])

    out.parent.mkdir(parents=True, exist_ok=True)
    stage = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        branch = Path(system.name) / MODEL_NAME / scenario
        results = stage / "results" / branch
        _copy(runs["accuracy"], results / "accuracy", (*LOGS, ACCURACY_TXT))
        _copy(runs["performance"], results / "performance" / "run_1", LOGS)
        compliance = stage / "compliance" / branch / TEST
        _copy(runs[TEST], compliance / "accuracy", (ACCURACY_LOG,))
        _copy(runs[TEST], compliance / "performance" / "run_1", (SUMMARY_LOG, DETAIL_LOG))
        (compliance / VERIFY_ACCURACY).write_text(verdict.accuracy.report)
        (compliance / VERIFY_PERFORMANCE).write_text(verdict.performance.report)
        measurements = stage / "measurements" / branch
        measurements.mkdir(parents=True)
        (measurements / "mlperf.conf").write_text(records["performance"].mlperf_conf)
        (measurements / "user.conf").write_text(_user_conf(records["performance"]))
        (measurements / "README.md").write_text(_readme(system.name, scenario, records))
        (measurements / f"{system.name}_{IMPLEMENTATION}_{scenario}.json").write_text(_dump(_measurements_json(records["performance"])))
        (stage / "systems").mkdir()
        (stage / "systems" / f"{system.name}.json").write_text(_dump(description))
        os.rename(stage, out)  # fails rather than replace a folder made meanwhile
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return Submission(out, unfilled)


def _copy(source: Path, target: Path, names: tuple[str, ...]) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (source / name).is_file():
            raise SubmissionError(f"{source}: no {name} (LoadGen writes it with every run)")
        shutil.copy2(source / name, target / name)


def _dump(value: dict[str, Any]) -> str:
    return json.dumps(value, indent=2) + "\n"


def _user_conf(record: RunRecord) -> str:
    """The user.conf the runs read, and the trial flags they ran under as the lines they stand for."""
    text = record.user_conf if record.user_conf is not None else "# no user.conf: mlperf.conf's settings\n"
    lines = []
    overrides = record.overrides
    if overrides.get("min_duration_s") is not None:
        lines.append(f"{MODEL_NAME}.{record.scenario}.min_duration = {round(overrides['min_duration_s'] * 1000)}")
    if overrides.get("min_query_count") is not None:
        lines.append(f"{MODEL_NAME}.{record.scenario}.min_query_count = {overrides['min_query_count']}")
    if overrides.get("performance_sample_count") is not None:
        lines.append(f"{MODEL_NAME}.*.performance_sample_count_override = {overrides['performance_sample_count']}")
    if lines:
        text = text.rstrip("\n") + "\n# set by `ssd loadgen` flags of these runs\n" + "\n".join(lines) + "\n"
    return text


def _readme(system: str, scenario: str, records: dict[str, RunRecord]) -> str:
    record = records["performance"]
    commands = "".join(f"\n{name} run:\n\n    {' '.join(run.command)}\n" for name, run in records.items())
    return (f"# {system}: ssd, {scenario}\n\nModel {record.model['file']} (sha256 {record.model['sha256']}), config "
            f"{record.config['name']}, run by {record.model['engine']} in {record.model['precision']} on {record.device}, "
            f"batch size {record.batch_size}, with MLPerf's decoding (score > {record.decode['score_threshold']}, NMS "
            f"{record.decode['nms_threshold']}, at most {record.decode['max_detections']} detections).\n"
            f"Data: {record.dataset['kind']} {record.dataset['split']} at {record.dataset['path']}, {record.dataset['samples']} samples.\n"
            f"{commands}\nThe tree was laid out by `ssd submission`.\n")


def _measurements_json(record: RunRecord) -> dict[str, Any]:
    precision = record.model["precision"]
    weights = record.model.get("weights", precision)
    return {
        "input_data_types": precision, "retraining": "no", "starting_weights_filename": record.model["file"],
        "weight_data_types": weights,
        "weight_transformations": "BatchNorm folded into the convolutions" if record.model["engine"] == "torch"
        else f"exported to ONNX by ssd export ({weights}), run by {record.model['engine']}",
    }


def _system_json(system: SystemDescription, record: RunRecord) -> tuple[dict[str, Any], list[str]]:
    """The system description: the submitter's fields, what this machine reports, "" for the rest
    (and the names of those)."""
    machine = machine_fields(record)
    given = {"submitter": system.submitter, "division": system.division, "status": system.status,
             "system_type": system.system_type, "system_name": system.name}
    description = {name: system.fields.get(name, given.get(name, machine.get(name, ""))) for name in SYSTEM_FIELDS}
    return description, [name for name, value in description.items() if value == ""]


def machine_fields(record: RunRecord) -> dict[str, Any]:
    """What this machine reports of itself, for a run on ``record.device`` with ``record``'s engine."""
    fields: dict[str, Any] = {"number_of_nodes": 1, "host_processor_core_count": os.cpu_count() or "",
                              "operating_system": f"{platform.system()} {platform.release()}".strip()}
    cpuinfo = _read("/proc/cpuinfo")
    models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    if models:
        fields["host_processor_model_name"] = models[0].strip()
        fields["host_processors_per_node"] = len(set(re.findall(r"^physical id\s*:\s*(\d+)$", cpuinfo, re.MULTILINE))) or 1
    memory = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.MULTILINE)
    if memory:
        fields["host_memory_capacity"] = f"{int(memory.group(1)) / 2**20:.0f} GB"
    engines = {"torch": "PyTorch", "openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}
    engine = record.model["engine"]
    fields["framework"] = f"{engines.get(engine, engine)} {record.software.get(engine, '')}".strip()  # engines' packages: their names
    fields["other_software_stack"] = ", ".join(f"{name} {version}" for name, version in sorted(record.software.items())
                                               if name != engine) + f", Python {platform.python_version()}"
    if record.device.startswith("cuda"):
        fields["accelerators_per_node"] = 1
        fields["accelerator_model_name"] = record.model.get("device_name", "")
    else:
        fields.update({"accelerators_per_node": 0, "accelerator_model_name": "N/A", "accelerator_memory_capacity": "N/A"})
    return fields


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""
