"""``ssd export``: the network as ONNX (``image`` -> ``locs``, ``confs``), checked against PyTorch."""
from __future__ import annotations

import argparse
from pathlib import Path

from ssd.cli.train import add_allow_other_config
from ssd.errors import SSDError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a model to ONNX and compare ONNX Runtime with PyTorch")
    parser.add_argument("--config", required=True, help="config name or path")
    parser.add_argument("--pretrained-model", "--pretrained_model", required=True, type=Path, help="checkpoint to export")
    parser.add_argument("--output", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--dynamic-batch", action="store_true", help="leave the batch dimension free (default: batch 1)")
    parser.add_argument("--num-classes", "--num_classes", type=int, help="classes incl. background, when the checkpoint cannot tell")
    add_allow_other_config(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export, then print ONNX Runtime's largest difference from PyTorch on a random input."""
    from ssd.checkpoint import load_model
    from ssd.config import load_config
    from ssd.data.labels import class_names_for
    from ssd.onnx_export import class_names_metadata, export_onnx, max_difference

    if args.output.suffix.lower() != ".onnx":
        raise SSDError(f"--output {args.output}: expected a .onnx file name")
    config = load_config(args.config)
    model, checkpoint = load_model(args.pretrained_model, config, args.num_classes, allow_other_config=args.allow_other_config)
    metadata = {"config": config.name, **class_names_metadata(class_names_for(checkpoint, model.num_classes))}
    export_onnx(model, config.model.image_size, args.output, opset=args.opset, dynamic_batch=args.dynamic_batch, metadata=metadata)
    height, width = config.model.image_size
    print(f"wrote {args.output} (input image [{'N' if args.dynamic_batch else 1}, 3, {height}, {width}], {model.num_classes} classes)")
    difference = max_difference(model, args.output, config.model.image_size, batch_size=2 if args.dynamic_batch else 1)
    print(f"onnxruntime vs PyTorch on a random input: max absolute difference {difference:.3g}")
    return 0
