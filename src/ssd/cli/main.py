"""The ``ssd`` command: one sub-command per module in this package.

Each sub-command module exposes ``add_parser(subparsers)`` (registering its parser with
``set_defaults(run=...)``) and a ``run(args) -> int``, importing only light modules at the top so
``ssd --help`` stays instant. Library errors (:class:`ssd.errors.SSDError`, missing files) become
one line on stderr and exit status 2, and so do faults of the machine (:class:`OSError`: a full disk,
a read-only folder, a path that is a file where a folder is needed), in words; the parameters a
library message names (:func:`ssd.errors.parameter`) are printed as the flags that set them. The command turns the process's memory policies on: huge
pages for large tensors (:func:`ssd.huge_pages.enable_huge_pages`, before torch is imported); each
command hands its loops a :func:`ssd.heap_retention.heap_retention_for` hook.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn

# sub-command modules under ssd.cli, in the order `ssd --help` lists them
COMMANDS = ("demo", "train", "evaluate", "report", "predict", "export", "loadgen", "submission", "summary", "data")


class CommandLineParser(argparse.ArgumentParser):
    """argparse's parser, with a usage error as one line (``error: ssd predict: argument ...``) and
    exit status 2, as every other error of the command is; ``--help`` still shows the usage."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLineParser(prog="ssd", description="SSD detectors for COCO and MLCommons Cognata")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"ssd.cli.{name}").add_parser(subparsers)
    return parser


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command, turning user-facing errors into a message and exit status 2."""
    from ssd.errors import SSDError, describe_os_error
    from ssd.huge_pages import enable_huge_pages

    enable_huge_pages()  # before the command imports torch

    try:
        return int(args.run(args) or 0)
    except SSDError as exc:
        print(f"error: {exc.naming(flag_of)}", file=sys.stderr)
        return 2
    except OSError as exc:  # a fault of the machine: full disk, read-only folder, a file where a folder is needed...
        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def flag_of(parameter: str) -> str:
    """The flag that sets a library parameter named in an error message (``file_list`` -> ``--file-list``)."""
    return "--" + parameter.replace("_", "-")


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0), or a usage error (2), its one line printed
        return int(exit_.code or 0)
    args.argv = argv  # the command line as given, for the records a command keeps of its runs
    configure_logging(args.verbose)
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
