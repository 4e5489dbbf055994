"""MLPerf's compliance test TEST01 (``ssd loadgen --audit``) and the submission tree (``ssd submission``)."""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import forked
from steady_loadgen import Unsteady, steady_run
from support import TinyFiles

from ssd.cli.main import main
from ssd.compliance import AUDIT_FOUND, ComplianceError, audit_verdict, verify_performance
from ssd.loadgen import ACCURACY_LOG, SUMMARY_LOG
from ssd.run_record import RECORD_NAME, RunRecordError
from ssd.submission import SubmissionError

QUERIES = 64  # early stopping's minimum for the 90th percentile
QUERY_SECONDS = 0.25  # every query takes this long (its detections computed as its sample was loaded)
# a timed run is steady when no query ended later than this after QUERY_SECONDS: two steady runs' estimates are
# then within 8 % of each other, inside TEST01's 10 %, so an honest audit of them must pass
STEADY_SLACK_SECONDS = 0.02
ATTEMPTS = 4  # a timed run the machine disturbed (a query later than the slack) is run again, at most this often
USER_CONF = "ssd.SingleStream.target_latency_percentile = 90\n"  # a 90th-percentile run is VALID after 64 queries
# the module fixture is a whole run (three LoadGen runs, most of a minute): marked slow, the module is kept whole
# in one worker of `make test` (tests/conftest.py), never split by work stealing into a second and third run; it
# mostly waits (cores=0), so it is dealt beside a run of several processes
pytestmark = pytest.mark.slow(cores=0)


@dataclass
class Runs:
    accuracy: Path
    performance: Path
    audit: Path
    cwd: Path
    printed: str
    status: int


def loadgen(files: TinyFiles, user_conf: Path, output: Path, *flags: str) -> int:
    return main(loadgen_argv(files, user_conf, output, *flags))


def loadgen_argv(files: TinyFiles, user_conf: Path, output: Path, *flags: str) -> list[str]:
    return ["loadgen", "--config", str(files.config), "--pretrained-model", str(files.checkpoint), "--data-path", str(files.data),
            "--device", "cpu", "--count", "4", "--user-conf", str(user_conf), "--output-dir", str(output), *flags]


@pytest.fixture(scope="module")
def runs(tiny_files: TinyFiles, tmp_path_factory) -> Runs:
    """An accuracy run, a performance run and the TEST01 run that audits them, from a working folder of their own,
    against a SUT that answers every query after QUERY_SECONDS (``steady_loadgen.py``). The runs ask for a higher
    priority (nice -10, where the process may raise it: root), as on a submitter's dedicated machine, and a timed
    run the machine disturbed anyway is run again."""
    folder = tmp_path_factory.mktemp("runs")
    user_conf = folder / "user.conf"
    user_conf.write_text(USER_CONF)
    timed = ["--min-duration", "0", "--min-query-count", str(QUERIES)]
    folders = [folder / "accuracy", folder / "performance", folder / "audit"]
    argvs = [
        loadgen_argv(tiny_files, user_conf, folders[0], "--accuracy"),
        loadgen_argv(tiny_files, user_conf, folders[1], *timed),
        loadgen_argv(tiny_files, user_conf, folders[2], *timed, "--audit", "TEST01", "--accuracy-run", str(folders[0]),
                     "--performance-run", str(folders[1])),
    ]
    settings = {"argvs": argvs, "folders": [str(f) for f in folders], "seconds": QUERY_SECONDS, "slack": STEADY_SLACK_SECONDS,
                "attempts": ATTEMPTS}
    one_thread = {**os.environ, "OMP_NUM_THREADS": "1"}  # two threads on two shared cores wait for each other when one is taken
    script = Path(__file__).with_name("steady_loadgen.py")
    done = forked.run([sys.executable, str(script), json.dumps(settings)], folder, one_thread, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    return Runs(*folders, folder, outcome["printed"], outcome["status"])


def test_test01_passes_on_an_honest_run(runs: Runs):
    assert runs.status == 0, runs.printed
    lines = runs.printed.splitlines()
    assert lines[-1] == "TEST01: PASS"
    assert re.fullmatch(r"TEST01 accuracy: PASS: \d+ sampled responses equal the accuracy run's", lines[-3])
    assert lines[-2].startswith("TEST01 performance: PASS: the 90.0th percentile estimate is ")
    assert (runs.audit / "verify_accuracy.txt").read_text().endswith("TEST PASS\n")
    assert (runs.audit / "verify_performance.txt").read_text().endswith("TEST PASS\n")
    assert AUDIT_FOUND in (runs.audit / "mlperf_log_detail.txt").read_text()  # LoadGen read the audit.config
    assert "Mode     : PerformanceOnly" in (runs.audit / SUMMARY_LOG).read_text()
    assert json.loads((runs.audit / ACCURACY_LOG).read_text())  # responses sampled in performance mode
    assert not list(runs.cwd.rglob("audit.config"))  # never left behind, in the working folder or anywhere else
    assert {json.loads((folder / RECORD_NAME).read_text())["mode"] for folder in (runs.accuracy, runs.performance, runs.audit)} == {
        "accuracy", "performance", "TEST01"}


def _runs_lasting(summary: str, folder: Path, longest_ns: list[int]):
    """A stand-in for a timed run: each call writes LoadGen's summary with the next longest query into ``folder``."""
    pending = iter(longest_ns)

    def run() -> tuple[int, str]:
        folder.mkdir()
        longest = next(pending)
        (folder / SUMMARY_LOG).write_text(_summary_with(summary, longest=longest))
        return 0, f"run lasting {longest}"
    return run


@pytest.mark.parametrize(("longest_ns", "kept"), [
    ([270_000_000], 0),  # a query exactly the slack late: steady
    ([270_000_001, 250_000_000], 1),  # one nanosecond more: run again
    ([300_000_000, 270_000_001, 251_000_000], 2),
])
def test_a_disturbed_timed_run_is_run_again_and_set_aside(runs: Runs, tmp_path: Path, longest_ns: list[int], kept: int):
    folder = tmp_path / "performance"
    run = _runs_lasting((runs.performance / SUMMARY_LOG).read_text(), folder, longest_ns)
    assert steady_run(run, folder, seconds=0.25, slack=0.02, attempts=3) == (0, f"run lasting {longest_ns[-1]}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["performance", *(f"performance.disturbed-{n}" for n in range(1, kept + 1))]


def test_a_machine_that_disturbs_every_attempt_fails_the_runs_by_name(runs: Runs, tmp_path: Path):
    folder = tmp_path / "audit"
    run = _runs_lasting((runs.performance / SUMMARY_LOG).read_text(), folder, [270_000_001, 311_885_799, 290_000_000, 250_000_000])
    with pytest.raises(Unsteady, match=r"audit: every one of 3 runs had a query later than 20 ms past 0.25 s \(by 20.0, 61.9, 40.0 ms\)"):
        steady_run(run, folder, seconds=0.25, slack=0.02, attempts=3)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"audit.disturbed-{n}" for n in (1, 2, 3)]


def _altered(audit: Path, target: Path) -> Path:
    """A copy of the audit run whose first sampled response has one byte changed."""
    shutil.copytree(audit, target)
    entries = json.loads((target / ACCURACY_LOG).read_text())
    data = bytearray(bytes.fromhex(entries[0]["data"]))
    data[-1] ^= 1  # the last byte of the last detection's score
    entries[0]["data"] = data.hex().upper()
    (target / ACCURACY_LOG).write_text(json.dumps(entries))
    return target


def test_test01_fails_when_the_performance_mode_results_are_altered(runs: Runs, tmp_path: Path, capsys):
    altered = _altered(runs.audit, tmp_path / "altered")
    verdict = audit_verdict("TEST01", runs.accuracy, runs.performance, altered)
    assert not verdict.passed and not verdict.accuracy.passed and verdict.performance.passed
    assert verdict.accuracy.reason.startswith("1 of ") and "sampled responses differ from the accuracy run's" in verdict.accuracy.reason
    assert "TEST FAIL" in verdict.accuracy.report and "num_perf_log_data_mismatch = 1" in verdict.accuracy.report
    argv = ["submission", "--system", "tiny-cpu", "--submitter", "ACME", "--accuracy-run", str(runs.accuracy),
            "--performance-run", str(runs.performance), "--audit-run", str(altered), "--out", str(tmp_path / "tree")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "TEST01 does not pass against these runs" in err[0] and "differ" in err[0]
    assert not (tmp_path / "tree").exists()


def test_the_submission_tree(runs: Runs, tmp_path: Path, capsys):
    tree = tmp_path / "submission"
    system_json = tmp_path / "system.json"
    system_json.write_text(json.dumps({"system_type": "automotive", "cooling": "air"}))
    argv = ["submission", "--system", "tiny-cpu", "--submitter", "ACME", "--system-json", str(system_json), "--accuracy-run",
            str(runs.accuracy), "--performance-run", str(runs.performance), "--audit-run", str(runs.audit), "--out", str(tree)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"submission tree in {tree}" in printed and "fill in by hand in systems/tiny-cpu.json: " in printed
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*") if p.is_file())
    branch = "tiny-cpu/ssd/SingleStream"
    logs = ["mlperf_log_accuracy.json", "mlperf_log_detail.txt", "mlperf_log_summary.txt"]
    assert files == sorted([
        *(f"results/{branch}/accuracy/{name}" for name in [*logs, "accuracy.txt"]),
        *(f"results/{branch}/performance/run_1/{name}" for name in logs),
        f"compliance/{branch}/TEST01/verify_accuracy.txt", f"compliance/{branch}/TEST01/verify_performance.txt",
        f"compliance/{branch}/TEST01/accuracy/mlperf_log_accuracy.json",
        f"compliance/{branch}/TEST01/performance/run_1/mlperf_log_summary.txt",
        f"compliance/{branch}/TEST01/performance/run_1/mlperf_log_detail.txt",
        *(f"measurements/{branch}/{name}" for name in ("mlperf.conf", "user.conf", "README.md", "tiny-cpu_ssd_SingleStream.json")),
        "systems/tiny-cpu.json",
    ])
    assert (tree / f"results/{branch}/accuracy/accuracy.txt").read_bytes() == (runs.accuracy / "accuracy.txt").read_bytes()
    assert (tree / f"results/{branch}/performance/run_1/{SUMMARY_LOG}").read_bytes() == (runs.performance / SUMMARY_LOG).read_bytes()
    assert (tree / f"compliance/{branch}/TEST01/accuracy/{ACCURACY_LOG}").read_bytes() == (runs.audit / ACCURACY_LOG).read_bytes()
    assert (tree / f"compliance/{branch}/TEST01/verify_accuracy.txt").read_text().endswith("TEST PASS\n")
    user_conf = (tree / f"measurements/{branch}/user.conf").read_text()
    assert user_conf.startswith(USER_CONF) and f"ssd.SingleStream.min_query_count = {QUERIES}\n" in user_conf
    assert "ssd.SingleStream.min_duration = 0\n" in user_conf  # the trial flags the runs ran under, as the lines they stand for
    from ssd.loadgen_conf import DEFAULT_MLPERF_CONF

    assert (tree / f"measurements/{branch}/mlperf.conf").read_text() == DEFAULT_MLPERF_CONF.read_text()
    readme = (tree / f"measurements/{branch}/README.md").read_text()
    assert readme.count("ssd loadgen --config") == 3 and "--audit TEST01" in readme
    measurements = json.loads((tree / f"measurements/{branch}/tiny-cpu_ssd_SingleStream.json").read_text())
    assert measurements["starting_weights_filename"] == "tiny.pth" and measurements["weight_data_types"] == "fp32"
    system = json.loads((tree / "systems/tiny-cpu.json").read_text())
    assert (system["submitter"], system["division"], system["system_name"], system["system_type"], system["cooling"]) == (
        "ACME", "closed", "tiny-cpu", "automotive", "air")
    assert system["host_processor_core_count"] > 0 and system["framework"].startswith("PyTorch ") and system["accelerators_per_node"] == 0
    assert main(argv) == 2  # never written over
    assert "already exists; a submission tree is written only into a new folder" in capsys.readouterr().err
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial tree left beside it


def _edited_record(run: Path, target: Path, **changes) -> Path:
    shutil.copytree(run, target)
    record = json.loads((target / RECORD_NAME).read_text())
    for key, value in changes.items():
        record[key] = {**record[key], **value} if isinstance(value, dict) else value
    (target / RECORD_NAME).write_text(json.dumps(record))
    return target


@pytest.mark.parametrize(("which", "changes", "message"), [
    ("performance", {"model": {"sha256": "0" * 64}}, "the performance run is not of the same model and settings as the accuracy run .*model"),
    ("performance", {"user_conf": "ssd.SingleStream.target_latency_percentile = 99.9\n"}, "user_conf"),
    ("accuracy", {"config": {"sha256": "1" * 64}}, "config"),
    ("accuracy", {"dataset": {"samples": 3}}, "dataset"),
    ("audit", {"batch_size": 2}, "the TEST01 run is not of the same model and settings as the performance run .*batch_size"),
    ("performance", {"mode": "accuracy"}, "a accuracy run, not the performance run"),
])
@pytest.mark.hostile("MLPerf files and settings")
def test_logs_of_another_model_config_or_settings_are_never_laid_out(runs: Runs, tmp_path: Path, which: str, changes: dict, message: str):
    folders = {"accuracy": runs.accuracy, "performance": runs.performance, "audit": runs.audit}
    folders[which] = _edited_record(folders[which], tmp_path / which, **changes)
    from ssd.submission import SystemDescription, lay_out_submission

    with pytest.raises((RunRecordError, SubmissionError, ComplianceError), match=message):
        lay_out_submission(SystemDescription("tiny-cpu", "ACME"), folders["accuracy"], folders["performance"], folders["audit"], tmp_path / "tree")
    assert not (tmp_path / "tree").exists()


@pytest.mark.hostile("MLPerf files and settings")
def test_an_audit_of_runs_of_another_model_is_refused_before_it_runs(runs: Runs, tiny_files: TinyFiles, tmp_path: Path, capsys):
    other = _edited_record(runs.performance, tmp_path / "performance", model={"sha256": "0" * 64})
    user_conf = tmp_path / "user.conf"
    user_conf.write_text(USER_CONF)
    flags = ["--min-duration", "0", "--min-query-count", str(QUERIES), "--audit", "TEST01", "--accuracy-run", str(runs.accuracy)]
    assert loadgen(tiny_files, user_conf, tmp_path / "audit", *flags, "--performance-run", str(other)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not of the same model and settings" in err[0]
    assert not (tmp_path / "audit").exists()
    no_record = tmp_path / "bare"
    no_record.mkdir()
    assert loadgen(tiny_files, user_conf, tmp_path / "audit", *flags, "--performance-run", str(no_record)) == 2
    assert f"{no_record}: no {RECORD_NAME}: not the output folder of an `ssd loadgen` run" in capsys.readouterr().err
    assert loadgen(tiny_files, user_conf, tmp_path / "audit", "--audit", "TEST01") == 2
    assert "checked against --accuracy-run DIR and --performance-run DIR" in capsys.readouterr().err


@pytest.mark.hostile("MLPerf files and settings")
def test_an_audit_config_in_the_working_folder_is_refused(tiny_files: TinyFiles, tmp_path: Path, monkeypatch, capsys):
    """LoadGen would apply it to the run on its own: a compliance test left behind, running silently."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "audit.config").write_text("*.*.mode = 2\n")
    user_conf = tmp_path / "user.conf"
    user_conf.write_text(USER_CONF)
    assert loadgen(tiny_files, user_conf, tmp_path / "out", "--accuracy") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "audit.config: LoadGen would override this run's settings with it" in err[0]


def _summary_with(summary: str, estimate: int | None = None, result: str | None = None, percentile: str | None = None,
                  longest: int | None = None) -> str:
    lines = []
    for line in summary.splitlines():
        if longest is not None and line.startswith("Max latency (ns)"):
            line = f"{line.partition(':')[0]}: {longest}"
        if estimate is not None and "Early stopping 90.0th percentile estimate" in line:
            line = f" * Early stopping 90.0th percentile estimate: {estimate}"
        if percentile is not None:
            line = line.replace("Early stopping 90.0th", f"Early stopping {percentile}")
        if result is not None and line.startswith("Result is"):
            line = f"Result is : {result}"
        lines.append(line)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(("reference", "test", "passed"), [
    (10_000_000, 10_999_999, True), (10_000_000, 11_000_000, False),  # within 10 %, exclusive
    (10_000_000, 9_000_001, True), (10_000_000, 9_000_000, False),
    (200_000, 239_999, True), (200_000, 240_000, False),  # 20 % at or below 200,000 ns
    (200_001, 239_999, False),
])
def test_the_performance_check_at_its_bounds(runs: Runs, tmp_path: Path, reference: int, test: int, passed: bool):
    summary = (runs.performance / SUMMARY_LOG).read_text()
    (tmp_path / "reference.txt").write_text(_summary_with(summary, reference))
    (tmp_path / "test.txt").write_text(_summary_with(summary, test))
    check = verify_performance(tmp_path / "reference.txt", tmp_path / "test.txt")
    assert check.passed is passed and check.report.startswith(f"reference score = {reference}\ntest score = {test}\n")


@pytest.mark.parametrize(("edit", "reason"), [
    ({"result": "INVALID"}, "the audit run's result is INVALID, not VALID"),
    ({"percentile": "50.0th"}, "no early-stopping estimate of the 90th or 99.9th percentile"),  # as verify_performance.py reads
])
def test_an_invalid_or_unreadable_audit_summary_fails(runs: Runs, tmp_path: Path, edit: dict, reason: str):
    summary = (runs.performance / SUMMARY_LOG).read_text()
    (tmp_path / "test.txt").write_text(_summary_with(summary, **edit))
    check = verify_performance(runs.performance / SUMMARY_LOG, tmp_path / "test.txt")
    assert not check.passed and reason in check.reason and check.report.endswith(f"TEST FAIL: {check.reason}\n")
