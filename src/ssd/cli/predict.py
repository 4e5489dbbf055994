"""``ssd predict`` and the seed's test_image.py / test_video.py / test_dataset.py: draw detections.

The input is an image, a folder of images, a video, or (``--dataset --data-path``) every image of a
dataset split. Each output image or video frame has the detections drawn (a fixed colour per class,
"name score" labels) and the detections are saved as JSON in pixels of the original image.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from ssd.cli.outputs import holding, refuse_folder_of_inputs, refuse_overwriting
from ssd.cli.ranges import CLASSES, COUNT, IOU, PIXELS, SCORE, WORKERS
from ssd.cli.train import DATASET_HELP, add_allow_other_config, add_cudnn_benchmark, dataset_name
from ssd.errors import SSDError

if TYPE_CHECKING:  # the heavy imports wait until a command runs
    import numpy as np
    from torch import Tensor

    from ssd.inference import Detector

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")  # read, and written (Pillow)
VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".webm")  # the containers of ssd.video.CODECS (written)
DEFAULT_CONFIG = "baseline_8MP_ss_scales_fm1_5x5_all"
BACKENDS = ("auto", "torch", "onnxruntime", "openvino")
BACKEND_HELP = ("run the network with PyTorch, ONNX Runtime or OpenVINO (CPU); auto (default): PyTorch for --pretrained-model, "
                "for --onnx OpenVINO on the CPU when installed (the fastest there), else ONNX Runtime")
PRECISIONS = ("fp32", "bf16", "fp16")  # ssd.inference.PRECISIONS (not imported here: the CLI's imports stay light)
PRECISION_HELP = ("fp32 (default); bf16 or fp16: PyTorch autocast; bf16 also OpenVINO on a CPU with native bfloat16. "
                  "INT8 is a file: ssd export --int8")
T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Model, input, decoding and drawing flags (the seed scripts' spellings included)."""
    model = parser.add_argument_group("model")
    model.add_argument("--config", default=DEFAULT_CONFIG, help=f"config name or path (default {DEFAULT_CONFIG})")
    model.add_argument("--pretrained-model", "--pretrained_model", type=Path, help="checkpoint (run by PyTorch)")
    model.add_argument("--num-classes", "--num_classes", type=CLASSES, help="classes incl. background, when the checkpoint cannot tell (torch)")
    model.add_argument("--backend", choices=BACKENDS, default="auto", help=BACKEND_HELP)
    model.add_argument("--onnx", type=Path, help="model exported by `ssd export`, float32 or INT8 (run by OpenVINO or ONNX Runtime)")
    model.add_argument("--precision", choices=PRECISIONS, default="fp32", help=PRECISION_HELP)
    model.add_argument("--device", default=None,
                       help="cpu, cuda or cuda:N (default: CUDA when available; with --backend onnxruntime, its CUDA provider)")
    model.add_argument("--batch-size", "--batch_size", type=COUNT, default=4, help="images or frames per forward pass (default 4)")
    add_allow_other_config(model)
    add_cudnn_benchmark(model)

    source = parser.add_argument_group("input and output")
    source.add_argument("--input", type=Path, help="an image, a folder of images, or a video")
    source.add_argument("--dataset", type=dataset_name, help=f"instead of --input: every image of a dataset split ({DATASET_HELP})")
    source.add_argument("--data-path", "--data_path", type=Path, help="dataset root for --dataset")
    source.add_argument("--split", default="val", help="dataset split for --dataset (default val)")
    source.add_argument("--file-list", type=Path,
                        help="with --dataset cognata: CSV of the images to draw (e.g. MLPerf's val_set.csv), in its order, instead of --split")
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


def run(args: argparse.Namespace) -> int:
    """Pick the input kind (dataset, folder, image or video) and predict on it."""
    if (args.input is None) == (args.dataset is None):
        raise SSDError("give either --input PATH or --dataset KIND --data-path DIR")
    if args.num_workers is None:
        args.num_workers = default_workers()
    if args.input is not None and not args.input.exists():
        raise SSDError(f"input not found: {args.input}")
    if args.input is not None and not (args.input.is_file() or args.input.is_dir()):  # a FIFO would block forever
        raise SSDError(f"input {args.input}: not a regular file or a folder")
    if args.file_list is not None and args.dataset is None:
        raise SSDError(f"--file-list {args.file_list}: a file list selects images of --dataset cognata --data-path DIR; for other images give --input")
    if args.dataset is not None:
        if args.data_path is None:
            raise SSDError("--dataset needs --data-path DIR")
        if args.dataset == "cognata-preprocessed":
            raise SSDError("--dataset cognata-preprocessed holds network inputs, not pictures to draw on; predict on the raw Cognata frames")
        selection = args.split if args.file_list is None else args.file_list.stem
        output = check_folder_output(args.output or Path(f"{args.data_path.resolve().name}_{selection}_prediction"))
        with holding(output):
            return predict_dataset(build_detector(args), output, args)
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
        refuse_overwriting([target for _, target in jobs] + log_paths(output / "detections.json"), images)  # before the model loads
        with holding(output):
            return predict_images(build_detector(args), jobs, output / "detections.json", args)
    if args.input.suffix.lower() in IMAGE_SUFFIXES:
        output = check_file_output(args.output or args.input.with_name(f"{args.input.stem}_prediction.jpg"), IMAGE_SUFFIXES, "image")
        refuse_overwriting([output, *log_paths(output.with_suffix(".json"))], [args.input])  # before the model loads
        return predict_images(build_detector(args), [(args.input, output)], output.with_suffix(".json"), args)
    output = check_file_output(args.output or args.input.with_name(f"{args.input.stem}_prediction.mp4"), VIDEO_SUFFIXES, "video")
    refuse_overwriting([output, *log_paths(output.with_suffix(".json"))], [args.input])
    return predict_video(build_detector(args), args.input, output, args)


def folder_images(folder: Path) -> tuple[list[Path], list[str]]:
    """The images of a folder, by name, and what is left out and why (hidden entries aside): a file of
    another kind, a subfolder, a broken link."""
    images, passed_over = [], []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.suffix.lower() in IMAGE_SUFFIXES and entry.is_file():
            images.append(entry)
        elif entry.is_symlink() and not entry.exists():
            passed_over.append(f"{entry.name} (a broken link)")
        elif entry.is_dir():
            passed_over.append(f"{entry.name} (a folder)")
        else:
            passed_over.append(f"{entry.name} (not one of {', '.join(IMAGE_SUFFIXES)})")
    return images, passed_over


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


def prediction_run(args: argparse.Namespace, detector: Detector, video: Path | None = None) -> dict[str, Any]:
    """What produces a prediction's outputs, kept in its log so that ``--resume`` continues only the
    same run: the model's and config's SHA-256, engine, precision, decoding and drawing, the video's SHA-256."""
    from ssd.run_record import file_digest, text_digest

    run = {
        "model_sha256": file_digest(model_file(args)), "config_sha256": text_digest(detector.config.text), "engine": detector.engine,
        "precision": detector.precision, "decode": [args.cls_threshold, args.nms_threshold, args.max_boxes],
        "drawing": [args.box_thickness, args.text_size],
    }
    if video is not None:
        run["video_sha256"] = file_digest(video)
    return run


def model_file(args: argparse.Namespace) -> Path:
    """The weights' file the flags name: ``--pretrained-model``, else ``--onnx``."""
    return args.pretrained_model if args.pretrained_model is not None else args.onnx


def log_paths(json_path: Path) -> list[Path]:
    """The detections files of a run writing ``json_path``: it, and the ``.jsonl`` written as results come."""
    return [json_path, json_path.with_suffix(".jsonl")]


def output_names(images: Sequence[Path], folder: Path) -> list[Path]:
    """``folder/<stem>.jpg`` per image; ``<name>.jpg`` (suffix kept) for images whose stems collide
    (a.png and a.jpg), so no output overwrites another."""
    from collections import Counter

    stems = Counter(p.stem for p in images)
    return [folder / (f"{p.stem}.jpg" if stems[p.stem] == 1 else f"{p.name}.jpg") for p in images]


def default_workers() -> int:
    """Loader workers for folders: 2, or none with 2 cores or fewer (measured, README: they then
    only take cores from the network's threads, 0.9x)."""
    import os

    return 2 if len(os.sched_getaffinity(0)) > 2 else 0


def build_detector(args: argparse.Namespace, decode: dict[str, Any] | None = None) -> Detector:
    """The :class:`ssd.inference.Detector` the flags describe (``--backend``, ``--onnx``,
    ``--pretrained-model``...), decoding with ``decode`` (default: the drawing flags')."""
    from ssd.config import load_config
    from ssd.device import configure_cudnn
    from ssd.distributed import select_device
    from ssd.heap_retention import heap_retention_for
    from ssd.inference import Detector

    config = load_config(args.config)
    if decode is None:
        decode = {"score_threshold": args.cls_threshold, "nms_threshold": args.nms_threshold, "max_detections": args.max_boxes}
    if args.backend == "auto" and args.onnx is not None and args.pretrained_model is not None:
        raise SSDError("give --pretrained-model CKPT (PyTorch) or --onnx MODEL.onnx (an export), not both")
    if args.backend in ("onnxruntime", "openvino") or (args.backend == "auto" and args.onnx is not None):
        if args.onnx is None:
            raise SSDError(f"--backend {args.backend} needs --onnx MODEL.onnx")
        if args.pretrained_model is not None or args.num_classes is not None:
            raise SSDError(f"--backend {args.backend} takes the weights and class names from --onnx: drop --pretrained-model / --num-classes")
        detector = Detector.from_onnx(args.onnx, config, batch_size=args.batch_size, device=args.device, engine=args.backend,
                                      precision=args.precision, **decode)
        detector.after_batch = heap_retention_for(detector.device)  # the CPU's memory policy only when it runs there
        return detector
    if args.onnx is not None:
        raise SSDError("--backend torch runs --pretrained-model CKPT: drop --onnx (or give --backend auto, onnxruntime or openvino)")
    if args.pretrained_model is None:
        raise SSDError("--pretrained-model CKPT (PyTorch) or --onnx MODEL.onnx (an export) is required")
    device = select_device(args.device, 0)
    configure_cudnn(device, args.cudnn_benchmark)
    return Detector.from_checkpoint(
        args.pretrained_model, config, args.num_classes, device, batch_size=args.batch_size, after_batch=heap_retention_for(device),
        allow_other_config=args.allow_other_config, precision=args.precision, **decode,
    )


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` items (the last one shorter)."""
    chunk: list[T] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def draw(image: Tensor, result: dict[str, Any], class_names: Sequence[str], args: argparse.Namespace) -> np.ndarray:
    """``image [3, H, W]`` uint8 with ``result``'s detections drawn, as an ``[H, W, 3]`` array."""
    from ssd.visualize import draw_detections

    drawn = draw_detections(
        image, result["boxes"], result["labels"], result["scores"], class_names, thickness=args.box_thickness, font_size=args.text_size,
    )
    return drawn.permute(1, 2, 0).numpy()


def predict_images(
    detector: Detector, jobs: list[tuple[Path, Path]], json_path: Path, args: argparse.Namespace, orient: bool = True
) -> int:
    """Draw detections on each (input, output) image pair; one JSON file for all of them. ``orient``:
    apply EXIF orientation (images given to predict on; a dataset's are read as stored).

    One image: an unreadable file is an error. Several: decoded and preprocessed in loader workers
    ahead of the network, drawn and saved in a thread behind it, each finished image's record
    appended to ``detections.jsonl`` (``--resume`` skips them), an unreadable one reported and skipped.
    """
    if len(jobs) == 1:
        return _predict_one(detector, *jobs[0], json_path, args, orient)
    from concurrent.futures import ThreadPoolExecutor

    import torch
    from tqdm import tqdm

    from ssd.image_stream import load_images
    from ssd.atomic_file import write_atomically
    from ssd.prediction_log import PredictionLog

    log = PredictionLog(json_path.with_suffix(".jsonl"), resume=args.resume, run=prediction_run(args, detector))
    targets = dict(jobs)
    todo = [source for source, _ in jobs if str(source) not in log.finished]
    records = dict(log.finished)
    skipped = 0

    def finish(source: Path, image: Tensor, result: dict[str, Any]) -> None:  # in the writer thread
        record = save_prediction(source, targets[source], image, result, detector, args)
        log.append(record)
        records[str(source)] = record

    progress = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="predicting", unit="image", dynamic_ncols=True)
    with ThreadPoolExecutor(max_workers=1) as writer:
        pending = []
        for batch in load_images(todo, detector.transform, detector.batch_size, args.num_workers, orient):
            for item in batch:
                if item.error is not None:
                    logger.warning("skipped: %s", item.error)
                    skipped += 1
            ready = [item for item in batch if item.error is None]
            if ready:
                results = detector.detect(torch.stack([item.network_input for item in ready]), [item.size for item in ready])
                pending += [writer.submit(finish, item.path, item.image, result) for item, result in zip(ready, results)]
            while len(pending) > 2 * detector.batch_size:  # the writer is behind: wait rather than hold every image
                pending.pop(0).result()
            for future in [future for future in pending if future.done()]:
                future.result()  # a failed write stops the run here
            pending = [future for future in pending if not future.done()]
            progress.update(len(batch))
        for future in pending:
            future.result()
    progress.close()
    log.close()
    if not records:
        raise SSDError(f"none of the {len(jobs)} images could be read")
    ordered = [records[str(source)] for source, _ in jobs if str(source) in records]
    write_atomically(json_path, json.dumps(ordered, indent=1).encode())
    resumed = len(jobs) - len(todo)
    print(f"wrote {len(ordered)} images with detections to {json_path.parent}, detections to {json_path}"
          + (f" ({resumed} from the interrupted run)" if resumed else "") + (f"; skipped {skipped} unreadable" if skipped else ""))
    return 0


def encode_image(pixels: np.ndarray, target: Path) -> bytes:
    """``[H, W, 3]`` uint8 pixels in the format of ``target``'s suffix."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=Image.registered_extensions()[target.suffix.lower()], quality=95)
    return buffer.getvalue()


def save_prediction(source: Path, target: Path, image: Tensor, result: dict[str, Any], detector: Detector,
                    args: argparse.Namespace) -> dict[str, Any]:
    """Write ``image`` with ``result`` drawn to ``target`` (atomically) and return its JSON record."""
    from ssd.inference import detection_records
    from ssd.atomic_file import write_atomically

    write_atomically(target, encode_image(draw(image, result, detector.class_names, args), target))
    return {"image": str(source), "output": str(target), "height": int(image.shape[1]), "width": int(image.shape[2]),
            "detections": detection_records(result)}


def _predict_one(detector: Detector, source: Path, target: Path, json_path: Path, args: argparse.Namespace, orient: bool) -> int:
    from ssd.inference import to_image_tensor
    from ssd.atomic_file import write_atomically

    image = to_image_tensor(source, orient)
    (result,) = detector([image])
    record = save_prediction(source, target, image, result, detector, args)
    write_atomically(json_path, json.dumps(record, indent=1).encode())
    print(f"wrote 1 image with detections to {target}, detections to {json_path}")
    return 0


def predict_dataset(detector: Detector, output: Path, args: argparse.Namespace) -> int:
    """Every image of a dataset split (or of a file list), drawn into the ``output`` folder under its dataset-relative path."""
    from ssd.data.kinds import dataset_kind

    label_map = detector.metadata.get("label_map")
    dataset = dataset_kind(args.dataset).build(args.data_path, args.split, detector.config, label_map=label_map, file_list=args.file_list)
    jobs = []
    for index in range(len(dataset)):
        source = dataset.image_path(index)
        jobs.append((source, (output / source.relative_to(dataset.root)).with_suffix(".jpg")))
    refuse_overwriting([target for _, target in jobs] + log_paths(output / "detections.json"), [source for source, _ in jobs])
    return predict_images(detector, jobs, output / "detections.json", args, orient=False)  # as the annotations see them


def predict_video(detector: Detector, source: Path, output: Path, args: argparse.Namespace) -> int:
    """Decode (in a thread, ahead), detect, draw and encode frame by frame, keeping the source's
    timestamps and turning rotated frames upright; detections go to ``<output>.jsonl`` as they come
    (a line per frame, with its time) and to ``<output>.json`` at the end. Audio is not copied.

    ``--resume``: the frames an interrupted run logged in ``<output>.jsonl`` are drawn from their logged
    detections instead of running the network again (the video itself is encoded anew: a killed
    MP4 cannot be continued); a log whose timestamps are not this video's is refused."""
    import contextlib

    import torch
    from tqdm import tqdm

    from ssd.atomic_file import write_atomically
    from ssd.image_stream import prefetch
    from ssd.inference import detection_records, detections_of_records
    from ssd.prediction_log import finished_video_frames, header_line
    from ssd.video import VideoReader, VideoWriter

    frames: list[dict[str, Any]] = []
    lines = output.with_suffix(".jsonl")
    run = prediction_run(args, detector, video=source)
    finished = finished_video_frames(lines, run) if args.resume else []
    with VideoReader(source) as reader:
        info = reader.info
        start = time.perf_counter()
        write_atomically(lines, (header_line(run) + "".join(json.dumps(record) + "\n" for record in finished)).encode())  # a cut line goes
        with VideoWriter(output, info.width, info.height, info.fps, time_base=info.time_base) as writer, \
                lines.open("a", encoding="utf-8") as log, contextlib.closing(prefetch(reader.frames(), 2 * detector.batch_size)) as decoded, \
                tqdm(total=info.frames or None, desc="predicting", unit="frame", dynamic_ncols=True) as progress:  # its line ends on errors too
            for chunk in chunks(decoded, detector.batch_size):
                images = [torch.from_numpy(frame.pixels).permute(2, 0, 1) for frame in chunk]
                reused = finished[len(frames):len(frames) + len(chunk)]
                for offset, (record, frame) in enumerate(zip(reused, chunk)):
                    if record.get("pts") != frame.pts:
                        raise SSDError(f"--resume: {lines} logs frame {len(frames) + offset} at pts {record.get('pts')}, {source} has it at "
                                       f"{frame.pts}: the log is of another video; predict again without --resume")
                results = [detections_of_records(record["detections"]) for record in reused]
                if len(reused) < len(chunk):
                    results += detector(images[len(reused):])
                for offset, (frame, image, result) in enumerate(zip(chunk, images, results)):
                    writer.write(draw(image, result, detector.class_names, args), frame.pts)
                    if offset < len(reused):
                        record = reused[offset]
                    else:
                        record = {"frame": len(frames), "time": frame.time, "pts": frame.pts, "detections": detection_records(result)}
                        log.write(json.dumps(record) + "\n")
                    frames.append(record)
                log.flush()
                progress.update(len(chunk))
        elapsed = time.perf_counter() - start
    if not frames:
        raise SSDError(f"{source}: no frame could be decoded")
    if len(finished) > len(frames):
        raise SSDError(f"--resume: {lines} logs {len(finished)} frames, {source} has {len(frames)}: the log is of another video; "
                       "predict again without --resume")
    json_path = output.with_suffix(".json")
    summary = {"video": str(source), "output": str(output), "fps": float(info.fps), "rotation": info.rotation, "frames": frames}
    write_atomically(json_path, json.dumps(summary, indent=1).encode())
    print(f"wrote {len(frames)} frames to {output}, detections to {json_path} and {lines}"
          + (f" ({len(finished)} detected by the interrupted run)" if finished else ""))
    print(f"{len(frames)} frames in {elapsed:.1f} s: {len(frames) / elapsed:.2f} frames/s")
    return 0
