"""``ssd predict`` and the seed's test_image.py / test_video.py / test_dataset.py: draw detections.

The input is an image, a folder of images, a video, or (``--dataset --data-path``) every image of a
dataset split. Each output image or video frame has the detections drawn (a fixed colour per class,
"name score" labels) and the detections are saved as JSON in pixels of the original image. The work
is :mod:`ssd.prediction`'s; this module names and checks the outputs and prints what was written.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ssd.cli.flags import add_data, add_detector
from ssd.cli.outputs import holding, refuse_folder_of_inputs, refuse_overwriting
from ssd.cli.ranges import COUNT, IOU, PIXELS, SCORE, WORKERS
from ssd.engine.options import DEFAULT_CONFIG
from ssd.errors import SSDError

if TYPE_CHECKING:  # the heavy imports wait until a command runs
    from ssd.detector_spec import DetectorSpec
    from ssd.inference import Detector
    from ssd.prediction import Drawing

# ssd.prediction's (not imported here: the CLI's imports stay light; a test holds them equal)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Model, input, decoding and drawing flags (the seed scripts' spellings included)."""
    add_detector(parser, config_default=DEFAULT_CONFIG, batch_size=4, batch_help="images or frames per forward pass")

    source = parser.add_argument_group("input and output")
    source.add_argument("--input", type=Path, help="an image, a folder of images, or a video")
    add_data(source, kind_default=None, what="images to draw")
    source.add_argument("--num-workers", "--num_workers", type=WORKERS, default=None,
                        help="processes decoding and resizing images ahead of the network (folders, datasets; default 2, "
                        "or 0 on a machine of 2 cores or fewer, where they only compete with the network)")
    source.add_argument("--resume", action="store_true",
                        help="folders and datasets: skip the images an interrupted run into the same --output finished; "
                        "videos: draw the frames it logged from their logged detections")
    source.add_argument(
        "--output", type=Path,
        help="output image, video or folder (default: beside the input, named <input>_prediction; "
        "for --dataset, <data-path>_<split or file list>_prediction in the current folder)",
    )

    decode = parser.add_argument_group("decoding and drawing")
    decode.add_argument("--cls-threshold", "--cls_threshold", type=SCORE, default=0.3, help="minimum score drawn (default 0.3)")
    decode.add_argument("--nms-threshold", "--nms_threshold", type=IOU, default=0.5, help="NMS IoU threshold (default 0.5)")
    decode.add_argument("--max-boxes", "--max_boxes", type=COUNT, default=100, help="detections kept per image (default 100)")
    decode.add_argument("--box-thickness", "--box_thickness", type=PIXELS, default=2, help="box line width in pixels (default 2)")
    decode.add_argument("--text-size", "--text_size", type=PIXELS, default=None, help="label font size")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("predict", help="draw a model's detections on images, a video or a dataset split")
    add_arguments(parser)
    parser.set_defaults(run=run)


def detector_spec(args: argparse.Namespace) -> tuple[DetectorSpec, str]:
    """The model flags as a :class:`ssd.detector_spec.DetectorSpec` (checked before anything loads), its
    ``--precision auto`` chosen, and why that precision (``given`` when the flag named it)."""
    from ssd.detector_spec import DetectorSpec

    spec = DetectorSpec(
        config=args.config, pretrained_model=args.pretrained_model, onnx=args.onnx, backend=args.backend, precision=args.precision,
        device=args.device, batch_size=args.batch_size, num_classes=args.num_classes, allow_other_config=args.allow_other_config,
        cudnn_benchmark=args.cudnn_benchmark,
    )
    chosen, why = spec.with_chosen_precision()
    return chosen, why if chosen.precision != spec.precision else "given"


def build_detector(spec: DetectorSpec, decode: dict, precision_reason: str = "given") -> Detector:
    """``spec``'s detector with the process's memory policy after each batch on the CPU; once it is
    loaded, a precision ``auto`` chose is said on one line of stdout with ``precision_reason``."""
    from ssd.heap_retention import heap_retention_for

    detector = spec.build(decode, after_batch_for=heap_retention_for)
    if precision_reason != "given":
        print(f"precision auto: {spec.precision} ({precision_reason})", flush=True)
    return detector


def run(args: argparse.Namespace) -> int:
    """Pick the input kind (dataset, folder, image or video), check the outputs, then predict."""
    from ssd.prediction import Drawing, default_workers, folder_images, output_names

    if (args.input is None) == (args.dataset is None):
        raise SSDError("give either --input PATH or --dataset KIND --data-path DIR")
    if args.input is not None and not args.input.exists():
        raise SSDError(f"input not found: {args.input}")
    if args.input is not None and not (args.input.is_file() or args.input.is_dir()):  # a FIFO would block forever
        raise SSDError(f"input {args.input}: not a regular file or a folder")
    if args.file_list is not None and args.dataset is None:
        raise SSDError(f"--file-list {args.file_list}: a file list selects images of --dataset cognata --data-path DIR; for other images give --input")
    spec, why = detector_spec(args)
    drawing = Drawing(args.box_thickness, args.text_size)
    decode = {"score_threshold": args.cls_threshold, "nms_threshold": args.nms_threshold, "max_detections": args.max_boxes}
    workers = default_workers() if args.num_workers is None else args.num_workers
    if args.dataset is not None:
        if args.data_path is None:
            raise SSDError("--dataset needs --data-path DIR")
        if args.dataset == "cognata-preprocessed":
            raise SSDError("--dataset cognata-preprocessed holds network inputs, not pictures to draw on; predict on the raw Cognata frames")
        selection = args.split if args.file_list is None else args.file_list.stem
        output = check_folder_output(args.output or Path(f"{args.data_path.resolve().name}_{selection}_prediction"))
        with holding(output):
            detector = build_detector(spec, decode, why)
            jobs = dataset_jobs(detector, args, output)
            return predict_many(detector, spec, jobs, output / "detections.json", drawing, args.resume, workers, orient=False)
    if args.input.is_dir():
        images, passed_over = folder_images(args.input)
        if passed_over:
            shown = ", ".join(passed_over[:5]) + (f" and {len(passed_over) - 5} more" if len(passed_over) > 5 else "")
            print(f"warning: {len(passed_over)} entries of {args.input} are not images and are left out: {shown}", file=sys.stderr)
        if not images:
            raise SSDError(f"{args.input}: no images ({', '.join(IMAGE_SUFFIXES)})")
        output = check_folder_output(args.output or args.input.with_name(f"{args.input.name}_prediction"))
        refuse_folder_of_inputs(output, args.input)
        jobs = list(zip(images, output_names(images, output)))
        refuse_overwriting([target for _, target in jobs] + log_files(output / "detections.json"), images)  # before the model loads
        with holding(output):
            return predict_many(build_detector(spec, decode, why), spec, jobs, output / "detections.json", drawing, args.resume, workers)
    if args.input.suffix.lower() in IMAGE_SUFFIXES:
        output = check_file_output(args.output or args.input.with_name(f"{args.input.stem}_prediction.jpg"), IMAGE_SUFFIXES, "image")
        refuse_overwriting([output, *log_files(output.with_suffix(".json"))], [args.input])  # before the model loads
        return predict_one(build_detector(spec, decode, why), args.input, output, output.with_suffix(".json"), drawing)
    output = check_file_output(args.output or args.input.with_name(f"{args.input.stem}_prediction.mp4"), VIDEO_SUFFIXES, "video")
    refuse_overwriting([output, *log_files(output.with_suffix(".json"))], [args.input])
    return predict_video(build_detector(spec, decode, why), spec, args.input, output, drawing, args.resume)


def log_files(json_path: Path) -> list[Path]:
    from ssd.prediction import log_paths

    return log_paths(json_path)


def check_file_output(path: Path, suffixes: Sequence[str], kind: str) -> Path:
    """``path`` when it can take the ``kind`` written (checked before any work); else :class:`SSDError`."""
    if path.is_dir():
        raise SSDError(f"--output {path}: is a folder; name the {kind} file to write")
    if path.suffix.lower() not in suffixes:
        raise SSDError(f"--output {path}: cannot write {'an' if kind == 'image' else 'a'} {kind} as {path.suffix or 'a file without a suffix'}; "
                       f"use {', '.join(suffixes)}")
    return path


def check_folder_output(path: Path) -> Path:
    """``path`` when it can be the folder of outputs (checked before any work); else :class:`SSDError`."""
    if path.exists() and not path.is_dir():
        raise SSDError(f"--output {path}: exists and is not a folder; several images write a folder of images and detections.json")
    if not path.exists() and path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        raise SSDError(f"--output {path}: several images write a folder of images and detections.json, not one {path.suffix} file")
    return path


def dataset_jobs(detector: Detector, args: argparse.Namespace, output: Path) -> list[tuple[Path, Path]]:
    """Every image of the dataset split (or file list) and its output under its dataset-relative path, checked not to overwrite."""
    from ssd.data.kinds import dataset_kind

    label_map = detector.metadata.get("label_map")
    dataset = dataset_kind(args.dataset).build(args.data_path, args.split, detector.config, label_map=label_map, file_list=args.file_list)
    jobs = []
    for index in range(len(dataset)):
        source = dataset.image_path(index)
        jobs.append((source, (output / source.relative_to(dataset.root)).with_suffix(".jpg")))
    refuse_overwriting([target for _, target in jobs] + log_files(output / "detections.json"), [source for source, _ in jobs])
    return jobs


def predict_one(detector: Detector, source: Path, target: Path, json_path: Path, drawing: Drawing, orient: bool = True) -> int:
    from ssd.prediction import predict_image

    predict_image(detector, source, target, json_path, drawing, orient=orient)
    print(f"wrote 1 image with detections to {target}, detections to {json_path}")
    return 0


def predict_many(detector: Detector, spec: DetectorSpec, jobs: list[tuple[Path, Path]], json_path: Path, drawing: Drawing,
                 resume: bool, workers: int, orient: bool = True) -> int:
    from ssd.prediction import predict_images, run_identity

    if len(jobs) == 1:
        return predict_one(detector, *jobs[0], json_path, drawing, orient)
    done = predict_images(detector, jobs, json_path, drawing, run_identity(detector, spec.model_file, drawing),
                          resume=resume, num_workers=workers, orient=orient)
    print(f"wrote {done.written} images with detections to {json_path.parent}, detections to {json_path}"
          + (f" ({done.resumed} from the interrupted run)" if done.resumed else "")
          + (f"; skipped {done.skipped} unreadable" if done.skipped else ""))
    return 0


def predict_video(detector: Detector, spec: DetectorSpec, source: Path, output: Path, drawing: Drawing, resume: bool) -> int:
    from ssd.prediction import predict_video as predict, run_identity

    done = predict(detector, source, output, drawing, run_identity(detector, spec.model_file, drawing, video=source), resume=resume)
    json_path, lines = output.with_suffix(".json"), output.with_suffix(".jsonl")
    print(f"wrote {done.frames} frames to {output}, detections to {json_path} and {lines}"
          + (f" ({done.resumed} detected by the interrupted run)" if done.resumed else ""))
    print(f"{done.frames} frames in {done.seconds:.1f} s: {done.frames / done.seconds:.2f} frames/s")
    return 0
