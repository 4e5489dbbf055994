"""Seed-compatible entry point: ``python evaluate.py ...`` (also under torchrun), the same as ``ssd evaluate``.

The seed's evaluate.py takes every train.py flag plus ``--full-eval``; the flags that only steer
training (``--epochs``, ``--lr``, ...) are accepted here so a training command line can be reused,
and have no effect on the evaluation.
"""
import sys

from ssd.cli import evaluate, train
from ssd.cli.main import CommandLineParser, configure_logging, run_command

if __name__ == "__main__":
    parser = CommandLineParser(prog="evaluate.py", description=__doc__.splitlines()[0], conflict_handler="resolve")
    train.add_arguments(parser)
    evaluate.add_arguments(parser)  # replaces the shared flags train.py registered with evaluation's own
    parser.set_defaults(run=evaluate.run)
    configure_logging()
    sys.exit(run_command(parser.parse_args()))
