"""``ssd submission``: lay out an accuracy run, a performance run and a TEST01 run as an MLPerf submission tree."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ssd.errors import SSDError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("submission", help="lay out finished LoadGen runs as an MLPerf submission tree")
    parser.add_argument("--system", required=True, help="the system's name (names its folders and system description)")
    parser.add_argument("--submitter", required=True, help="the submitting organisation")
    parser.add_argument("--division", choices=("closed", "open"), default="closed", help="default closed")
    parser.add_argument("--status", default="available", help="available, preview or rdi (default available)")
    parser.add_argument("--system-type", default="", help="the system type MLPerf asks for")
    parser.add_argument("--system-json", type=Path, help="a JSON object of system description fields, over what the machine reports")
    parser.add_argument("--accuracy-run", type=Path, required=True, help="output folder of `ssd loadgen --accuracy`")
    parser.add_argument("--performance-run", type=Path, required=True, help="output folder of the performance run")
    parser.add_argument("--audit-run", type=Path, required=True, help="output folder of `ssd loadgen --audit TEST01`")
    parser.add_argument("--out", type=Path, required=True, help="the submission tree's folder (must not exist)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ssd.submission import SystemDescription, lay_out_submission

    fields = {}
    if args.system_json is not None:
        try:
            fields = json.loads(args.system_json.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise SSDError(f"--system-json {args.system_json}: not a readable JSON file: {exc}") from exc
        if not isinstance(fields, dict):
            raise SSDError(f"--system-json {args.system_json}: expected a JSON object of fields, got {type(fields).__name__}")
    system = SystemDescription(args.system, args.submitter, args.division, args.status, args.system_type, fields)
    submission = lay_out_submission(system, args.accuracy_run, args.performance_run, args.audit_run, args.out)
    print(f"submission tree in {submission.root}")
    if submission.unfilled:
        print(f"fill in by hand in systems/{args.system}.json: {', '.join(submission.unfilled)}")
    return 0
