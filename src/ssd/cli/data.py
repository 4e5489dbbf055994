"""``ssd data synth`` (synthetic datasets in the real formats), ``ssd data stats`` (what a loader keeps and skips) and
``ssd data preprocess`` (Cognata frames in MLPerf Automotive's preprocessed format)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from typing import TYPE_CHECKING

from ssd.cli.outputs import holding
from ssd.cli.ranges import COUNT, IMAGE_SIDE, SEED
from ssd.data.kinds import DATASET_KINDS, dataset_kind
from ssd.errors import SSDError

if TYPE_CHECKING:  # the heavy imports wait until a command runs
    from ssd.data.stats import DatasetStats

FORMATS = tuple(DATASET_KINDS)


def parse_size(text: str) -> tuple[int, int]:
    """``"300x400"`` -> (300, 400), height first, each an :data:`~ssd.cli.ranges.IMAGE_SIDE`."""
    sides = text.lower().split("x")
    if len(sides) != 2:
        raise argparse.ArgumentTypeError(f"expected HxW such as 300x300, got {text!r}")
    height, width = (IMAGE_SIDE(side) for side in sides)
    return height, width


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="write synthetic datasets; print dataset statistics")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    synth = actions.add_parser("synth", help="write a deterministic synthetic dataset in the real COCO or Cognata layout")
    synth.add_argument("--format", required=True, type=str.lower, choices=FORMATS, help="on-disk format")
    synth.add_argument("--out", required=True, type=Path, help="output folder (the dataset root)")
    synth.add_argument("--images", type=COUNT, default=500, help="number of images (default 500)")
    synth.add_argument("--size", type=parse_size, default=(300, 300), help="image size HxW (default 300x300)")
    synth.add_argument("--seed", type=SEED, default=0, help="random seed (default 0)")

    stats = actions.add_parser("stats", help="images, objects per class and size, and every skipped file or object")
    stats.add_argument("--dataset", required=True, type=str.lower, choices=FORMATS, help="dataset format")
    stats.add_argument("--data-path", "--data_path", required=True, type=Path, help="dataset root")
    stats.add_argument("--config", help="config whose dataset section selects Cognata scenarios, cameras and rules")
    stats.add_argument("--cache-dir", type=Path, help="index cache folder when the dataset folder is read-only")
    stats.add_argument("--strict", action="store_true", help="stop at the first bad input")
    stats.add_argument("--verify-images", action="store_true",
                       help="decode every kept image (in threads, with a progress bar) and report those that fail, as training "
                       "would; default: only image headers and files are checked (fast)")
    stats.add_argument("--json", action="store_true", help="print one JSON object")

    preprocess = actions.add_parser(
        "preprocess", help="write Cognata frames in MLPerf Automotive's preprocessed format ({val,calib}_<i>.pkl)"
    )
    preprocess.add_argument("--data-path", "--data_path", required=True, type=Path, help="raw Cognata dataset root")
    preprocess.add_argument("--out", required=True, type=Path, help="output folder (e.g. val_2d)")
    preprocess.add_argument("--file-list", type=Path, help="CSV of the frames, in sample order (e.g. val_set.csv); default: --split")
    preprocess.add_argument("--split", default="val", help="the split to write when no --file-list is given (default val)")
    preprocess.add_argument("--config", default=None, help="config: the model's image size and the dataset selection (default: the MLPerf config)")
    preprocess.add_argument("--calibration", action="store_true", help="name the files calib_<i>.pkl (a calibration set)")
    preprocess.add_argument("--cache-dir", type=Path, help="index cache folder when the dataset folder is read-only")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "synth":
        return _synth(args)
    if args.action == "preprocess":
        return _preprocess(args)
    return _stats(args)


def _preprocess(args: argparse.Namespace) -> int:
    from ssd.config import load_config
    from ssd.data.preprocessed import write_preprocessed
    from ssd.engine.options import DEFAULT_CONFIG

    if args.out.exists() and not args.out.is_dir():  # before the scan of the raw dataset
        raise SSDError(f"--out {args.out}: exists and is not a folder")
    config = load_config(args.config or DEFAULT_CONFIG)
    dataset = dataset_kind("cognata").build(args.data_path, args.split, config, train=False, file_list=args.file_list, cache_dir=args.cache_dir)
    prefix = "calib" if args.calibration else "val"
    with holding(args.out):
        frames = write_preprocessed(dataset, args.out, prefix, config.model.image_size, show_progress=True)
    print(f"wrote {frames} preprocessed frames ({prefix}_0.pkl .. {prefix}_{frames - 1}.pkl) to {args.out}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    with holding(args.out):
        result = dataset_kind(args.format).synthesise(args.out, args.images, size=args.size, seed=args.seed)
    print(f"wrote {result.images} {args.format} images with {result.objects} objects to {result.root}")
    return 0


def _stats(args: argparse.Namespace) -> int:
    from ssd.config import load_config

    config = load_config(args.config) if args.config else None
    stats = dataset_kind(args.dataset).statistics(
        args.data_path, config, cache_dir=args.cache_dir, strict=args.strict, verify_images=args.verify_images
    )
    print(json.dumps(stats.to_dict()) if args.json else format_stats(stats))
    return 0


def format_stats(stats: DatasetStats) -> str:
    """The human-readable report."""
    lines = [f"{stats.dataset} dataset at {stats.root}", f"images kept:  {stats.images}", f"objects kept: {stats.objects}", "per class:"]
    width = max((len(name) for name in stats.per_class), default=0)
    lines += [f"  {name:<{width}}  {count}" for name, count in stats.per_class.items()]
    lines.append("object sizes (original pixels): " + ", ".join(f"{k}: {v}" for k, v in stats.sizes.items()))
    if stats.side_px:
        lines.append("box side sqrt(area): " + ", ".join(f"{k} {v:.1f}" for k, v in stats.side_px.items()))
    lines.append(f"skipped: {len(stats.skipped)}")
    lines += [f"  {item['path']}: {item['reason']}" for item in stats.skipped]
    return "\n".join(lines)

