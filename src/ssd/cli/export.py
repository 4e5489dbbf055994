"""``ssd export``: the network as ONNX (``image`` -> ``locs``, ``confs``), checked against PyTorch;
with ``--int8``, its INT8 model calibrated on a dataset split (:mod:`ssd.quantize`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ssd.cli.flags import add_allow_other_config, add_config, add_data
from ssd.cli.outputs import refuse_overwriting
from ssd.cli.ranges import CLASSES, COUNT, OPSET
from ssd.errors import SSDError

CHECK_FRAMES = 2  # calibration frames an INT8 export is compared with PyTorch on


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("export", help="export a model to ONNX (float32 or INT8) and compare it with PyTorch")
    add_config(parser, None)
    parser.add_argument("--pretrained-model", "--pretrained_model", required=True, type=Path, help="checkpoint to export")
    parser.add_argument("--output", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("--opset", type=OPSET, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--dynamic-batch", action="store_true", help="leave the batch dimension free (default: batch 1)")
    parser.add_argument("--num-classes", "--num_classes", type=CLASSES, help="classes incl. background, when the checkpoint cannot tell")
    add_allow_other_config(parser)
    int8 = parser.add_argument_group("INT8 (post-training quantization; run the file with --backend openvino or onnxruntime)")
    int8.add_argument("--int8", action="store_true", help="write the INT8 model, calibrated on --data-path")
    add_data(int8, split=None, what="calibration frames", split_default_help="calib for Cognata-preprocessed, else train")
    int8.add_argument("--count", type=COUNT, default=100, help="calibration frames, spread evenly over the split (default 100)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Export, then print how far the exported model is from PyTorch."""
    from ssd.checkpoint import load_model
    from ssd.config import load_config
    from ssd.data.labels import class_names_for
    from ssd.onnx_export import class_names_metadata, export_onnx, max_difference

    if args.output.suffix.lower() != ".onnx":
        raise SSDError(f"--output {args.output}: expected a .onnx file name")
    refuse_overwriting([args.output], [args.pretrained_model])
    if args.int8 and args.data_path is None:
        raise SSDError("--int8 needs calibration frames: --data-path DIR (and --dataset, --split or --file-list)")
    if args.int8 and args.dynamic_batch:
        raise SSDError("--int8 writes a batch-1 model: drop --dynamic-batch")
    config = load_config(args.config)
    model, checkpoint = load_model(args.pretrained_model, config, args.num_classes, allow_other_config=args.allow_other_config)
    class_names = class_names_for(checkpoint, model.num_classes)
    metadata = {"config": config.name, **class_names_metadata(class_names)}
    if args.int8:
        return _export_int8(args, config, model, class_names, metadata)
    height, width = config.model.image_size
    export_onnx(model, config.model.image_size, args.output, opset=args.opset, dynamic_batch=args.dynamic_batch, metadata=metadata)
    print(f"wrote {args.output} (input image [{'N' if args.dynamic_batch else 1}, 3, {height}, {width}], {model.num_classes} classes)")
    difference = max_difference(model, args.output, config.model.image_size, batch_size=2 if args.dynamic_batch else 1)
    print(f"onnxruntime vs PyTorch on a random input: max absolute difference {difference:.3g}")
    return 0


def _export_int8(args: argparse.Namespace, config, model, class_names, metadata: dict[str, str]) -> int:
    """Calibrate on evenly spread frames of the split, write the INT8 model, and print the fraction of
    PyTorch's fp32 detections it reproduces on the first calibration frames."""
    from dataclasses import asdict

    import numpy as np

    from ssd.data.kinds import dataset_kind
    from ssd.decoding import DecodeSettings
    from ssd.evaluation.agreement import reproduced_fraction
    from ssd.inference import Detector
    from ssd.quantize import export_int8

    split = args.split or ("calib" if args.dataset == "cognata-preprocessed" else "train")
    dataset = dataset_kind(args.dataset).build(args.data_path, split, config, train=False, file_list=args.file_list)
    if len(dataset) == 0:
        raise SSDError(f"{args.data_path}: no calibration frames in split {split!r}")
    indices = sorted(set(np.linspace(0, len(dataset) - 1, min(args.count, len(dataset))).round().astype(int).tolist()))
    reference = Detector(model, config, class_names, settings=DecodeSettings.mlperf(), device="cpu", batch_size=1)
    checked = []  # the first frames, kept for the check (8 MP frames are 100 MB each: the rest are not kept)

    def calibration_frames():
        for index in indices:
            image, size = dataset.network_input(index, reference.preprocess)
            if len(checked) < CHECK_FRAMES:
                checked.append((image, size))
            yield image

    used = export_int8(model, config.model.image_size, args.output, calibration_frames(), metadata=metadata, opset=args.opset)
    height, width = config.model.image_size
    print(f"wrote {args.output} (INT8, calibrated on {used} frames of {args.data_path} {split}; input image [1, 3, {height}, {width}])")
    quantized = Detector.from_onnx(args.output, config, class_names, batch_size=1, device="cpu", engine="onnxruntime",
                                   **asdict(DecodeSettings.mlperf()))
    expected = [reference.detect(image[None], [size])[0] for image, size in checked]
    actual = [quantized.detect(image[None], [size])[0] for image, size in checked]
    print(f"INT8 vs PyTorch fp32 on {len(checked)} calibration frames: {reproduced_fraction(expected, actual):.1%} of the detections "
          "reproduced (same label, box within 1 px)")
    return 0
