"""MLPerf Automotive's compliance test for ``ssd``, TEST01: accuracy in performance mode.

TEST01 is a performance run that also logs a sample of its responses (LoadGen reads the test's
``audit.config``: performance mode, ``accuracy_log_rng_seed``, ``accuracy_log_sampling_target``). It
passes when those responses equal the accuracy run's for the same sample indices and the run's
early-stopping latency estimate is within 10 % of the submission's performance run (20 % when that is
at most 200,000 ns), both runs valid and of one scenario: the checks of the benchmark's
``run_verification.py`` (``verify_accuracy.py``, ``verify_performance.py``).

The ``audit.config`` is written into a folder of its own, handed to LoadGen by path and removed after
the run: it is never left in the user's working directory, where LoadGen would apply it to every
later run. That LoadGen read it is confirmed from the run's detail log.

Where this check is stricter than ``verify_accuracy.py``: that script compares the first byte of each
response (its default ``--dtype byte``); here the whole response must be equal, so a PASS here is a
PASS there.
"""
from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ssd.errors import SSDError
from ssd.loadgen import ACCURACY_LOG, AUDIT_CONFIG, DETAIL_LOG, SUMMARY_LOG, accuracy_log_entries, read_summary
from ssd.run_record import SHARED, SHARED_WITH_TIMING, RunRecord, read_record, require_same

# compliance/TEST01/ssd/audit.config of mlperf_automotive: mode 2 is PerformanceOnly
AUDITS = {
    "TEST01": {"mode": "2", "accuracy_log_rng_seed": "720381539243781796", "accuracy_log_sampling_target": "128"},
}
AUDIT_FOUND = "Found Audit Config file"  # LoadGen's detail-log line when it read an audit.config
PERFORMANCE_TOLERANCE = 0.10
SHORT_LATENCY_TOLERANCE = 0.20  # when the submission's estimate is at most SHORT_LATENCY_NS
SHORT_LATENCY_NS = 200_000
# the estimates verify_performance.py reads (another percentile's run fails there, so it fails here)
_ESTIMATE = re.compile(r"Early stopping (90th|90\.0th|99\.9th) percentile estimate$")  # a summary line's key


class ComplianceError(SSDError):
    """A compliance test that cannot be run or verified (missing logs, an audit LoadGen did not read)."""


def audit_config_text(test: str) -> str:
    """The ``audit.config`` of a compliance test, in LoadGen's format."""
    if test not in AUDITS:
        raise ComplianceError(f"compliance test {test!r}: ssd's is {', '.join(AUDITS)}")
    lines = [f"# MLPerf Automotive compliance {test} for ssd (written by ssd, removed after the run)"]
    lines += [f"*.*.{key} = {value}" for key, value in AUDITS[test].items()]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def audit_config_file(test: str) -> Iterator[Path]:
    """A fresh folder holding the test's ``audit.config``, removed when the block ends."""
    text = audit_config_text(test)
    folder = Path(tempfile.mkdtemp(prefix=f"ssd-{test}-"))
    try:
        path = folder / AUDIT_CONFIG
        path.write_text(text)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def confirm_audit_read(log_folder: str | Path, test: str) -> None:
    """Raise :class:`ComplianceError` unless the run's detail log says LoadGen read an audit.config."""
    detail = Path(log_folder) / DETAIL_LOG
    try:
        text = detail.read_text(errors="replace")
    except OSError as exc:
        raise ComplianceError(f"{detail}: cannot read LoadGen's detail log to confirm the {test} audit: {exc}") from exc
    if AUDIT_FOUND not in text:
        raise ComplianceError(f"{detail}: LoadGen did not report reading the {test} audit.config; the run is not a {test} run")


@dataclass(frozen=True)
class Check:
    """One half of a verification: passed or not, and its report (the text of ``verify_*.txt``)."""

    passed: bool
    reason: str
    report: str


def verify_accuracy(accuracy_log: str | Path, audit_log: str | Path) -> Check:
    """The audit run's logged responses against the accuracy run's, sample by sample (whole responses)."""
    reference: dict[int, bytes] = {}
    duplicates = duplicate_mismatches = 0
    accuracy_entries = accuracy_log_entries(accuracy_log)
    for index, data in accuracy_entries:
        if index in reference:
            duplicates += 1
            duplicate_mismatches += reference[index] != data
        else:
            reference[index] = data
    audit_entries = accuracy_log_entries(audit_log)
    matched = mismatched = missing = 0
    first_mismatch = None
    for index, data in audit_entries:
        if index not in reference:
            missing += 1
            continue
        matched += 1
        if data != reference[index]:
            mismatched += 1
            first_mismatch = index if first_mismatch is None else first_mismatch
    counts = {
        "num_acc_log_entries": len(accuracy_entries), "num_acc_log_duplicate_keys": duplicates,
        "num_acc_log_data_mismatch": duplicate_mismatches, "num_perf_log_entries": len(audit_entries),
        "num_perf_log_qsl_idx_match": matched, "num_perf_log_data_mismatch": mismatched, "num_missing_qsl_idxs": missing,
    }
    if mismatched:
        reason = f"{mismatched} of {matched} sampled responses differ from the accuracy run's (first: sample {first_mismatch})"
    elif matched == 0:
        reason = f"none of the {len(audit_entries)} sampled responses has a sample in the accuracy run"
    elif duplicate_mismatches:
        reason = f"the accuracy run logged {duplicate_mismatches} samples twice with different responses"
    else:
        reason = f"{matched} sampled responses equal the accuracy run's"
    passed = mismatched == 0 and matched > 0 and duplicate_mismatches == 0
    report = "".join(f"{key} = {value}\n" for key, value in counts.items()) + ("TEST PASS\n" if passed else f"TEST FAIL: {reason}\n")
    return Check(passed, reason, report)


def summary_fields(path: str | Path) -> dict[str, str]:
    """A LoadGen summary's scenario, result and early-stopping estimate (``percentile``, ``estimate_ns``)."""
    path = Path(path)
    if not path.is_file():
        raise ComplianceError(f"LoadGen summary not found: {path}")
    summary = read_summary(path)
    fields = {key: summary[key] for key in ("Scenario", "Result is") if key in summary}
    for key, value in summary.items():
        estimate = _ESTIMATE.search(key)
        if estimate and value.isdigit():
            fields.setdefault("percentile", estimate.group(1))
            fields.setdefault("estimate_ns", value)
    return fields


def verify_performance(performance_summary: str | Path, audit_summary: str | Path) -> Check:
    """The audit run's early-stopping latency estimate against the performance run's."""
    reference, test = summary_fields(performance_summary), summary_fields(audit_summary)
    lines = [f"reference score = {reference.get('estimate_ns', 'none')}", f"test score = {test.get('estimate_ns', 'none')}"]
    reason = None
    for name, fields in (("performance", reference), ("audit", test)):
        if fields.get("Result is") != "VALID":
            reason = f"the {name} run's result is {fields.get('Result is', 'missing')}, not VALID"
        elif "estimate_ns" not in fields:
            reason = f"the {name} run's summary has no early-stopping estimate of the 90th or 99.9th percentile (those TEST01 reads)"
        if reason:
            break
    if reason is None and reference.get("Scenario") != test.get("Scenario"):
        reason = f"the scenarios differ ({reference.get('Scenario')} against {test.get('Scenario')})"
    if reason is None and reference["percentile"] != test["percentile"]:
        reason = f"the estimates are of different percentiles ({reference['percentile']} against {test['percentile']})"
    if reason is None:
        ref_ns, test_ns = int(reference["estimate_ns"]), int(test["estimate_ns"])
        tolerance = SHORT_LATENCY_TOLERANCE if ref_ns <= SHORT_LATENCY_NS else PERFORMANCE_TOLERANCE
        ratio = test_ns / ref_ns
        within = ref_ns * (1 - tolerance) < test_ns < ref_ns * (1 + tolerance)
        reason = (f"the {reference['percentile']} percentile estimate is {test_ns:,} ns against {ref_ns:,} ns ({ratio:.3f}x; "
                  f"{'within' if within else 'outside'} {tolerance:.0%})")
        passed = within
    else:
        passed = False
    lines.append("TEST PASS" if passed else f"TEST FAIL: {reason}")
    return Check(passed, reason, "\n".join(lines) + "\n")


@dataclass(frozen=True)
class Verdict:
    """TEST01's result: both checks, and PASS only when both pass."""

    test: str
    accuracy: Check
    performance: Check

    @property
    def passed(self) -> bool:
        return self.accuracy.passed and self.performance.passed

    def summary(self) -> str:
        """One line per check and the verdict, as ``ssd loadgen --audit`` prints them."""
        return (f"{self.test} accuracy: {'PASS' if self.accuracy.passed else 'FAIL'}: {self.accuracy.reason}\n"
                f"{self.test} performance: {'PASS' if self.performance.passed else 'FAIL'}: {self.performance.reason}\n"
                f"{self.test}: {'PASS' if self.passed else 'FAIL'}\n")


VERIFY_ACCURACY = "verify_accuracy.txt"
VERIFY_PERFORMANCE = "verify_performance.txt"


def check_audited_runs(test: str, accuracy_run: str | Path, performance_run: str | Path, audit_record: RunRecord) -> None:
    """Raise unless the two runs a compliance test audits are an accuracy and a performance run of the
    model and settings of ``audit_record`` (checked before the test runs, and again when verified)."""
    folders = {"accuracy": Path(accuracy_run), "performance": Path(performance_run)}
    records = {name: read_record(folder) for name, folder in folders.items()}
    for name, record in records.items():
        if record.mode != name:
            raise ComplianceError(f"{folders[name]}: a {record.mode} run, not the {name} run")
    require_same({**records, test: audit_record}, SHARED)
    require_same({"performance": records["performance"], test: audit_record}, SHARED_WITH_TIMING)


def audit_verdict(test: str, accuracy_run: str | Path, performance_run: str | Path, audit_run: str | Path) -> Verdict:
    """Verify a finished compliance run against the runs it audits (nothing is written)."""
    audit_run = Path(audit_run)
    record = read_record(audit_run)
    if record.mode != test:
        raise ComplianceError(f"{audit_run}: a {record.mode} run, not a {test} run")
    check_audited_runs(test, accuracy_run, performance_run, record)
    confirm_audit_read(audit_run, test)
    return Verdict(
        test,
        verify_accuracy(Path(accuracy_run) / ACCURACY_LOG, audit_run / ACCURACY_LOG),
        verify_performance(Path(performance_run) / SUMMARY_LOG, audit_run / SUMMARY_LOG),
    )


def verify_audit(test: str, accuracy_run: str | Path, performance_run: str | Path, audit_run: str | Path) -> Verdict:
    """:func:`audit_verdict`, with its reports (``verify_accuracy.txt``, ``verify_performance.txt``)
    written into ``audit_run``, as ``run_verification.py`` writes them."""
    from ssd.atomic_file import write_atomically

    verdict = audit_verdict(test, accuracy_run, performance_run, audit_run)
    write_atomically(Path(audit_run) / VERIFY_ACCURACY, verdict.accuracy.report.encode())
    write_atomically(Path(audit_run) / VERIFY_PERFORMANCE, verdict.performance.report.encode())
    return verdict
