"""``ssd summary``: the layer table, feature-map sizes, anchors, parameters and mult-adds of a config."""
from __future__ import annotations

import argparse

from ssd.cli.flags import add_config
from ssd.cli.ranges import CLASSES, COUNT, DEPTH


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The seed's model_summary.py flags."""
    add_config(parser, None)
    parser.add_argument("--num-classes", "--num_classes", type=CLASSES, default=10, help="classes incl. background (default 10)")
    parser.add_argument("--batch-size", "--batch_size", type=COUNT, default=4, help="batch size of the summary input (default 4)")
    parser.add_argument("--depth", type=DEPTH, default=3, help="nesting depth of the layer table (default 3)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("summary", help="print a model summary for a config (no real forward pass)")
    add_arguments(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ssd.config import load_config
    from ssd.summary import summarize

    print(summarize(load_config(args.config), num_classes=args.num_classes, batch_size=args.batch_size, depth=args.depth))
    return 0
