"""``ssd demo`` (``make demo``): synthetic data -> train -> evaluate -> an annotated prediction and the
evaluation report, on a CPU.

Trains SSDLite-MobileNetV2 at 160x160 from scratch on generated COCO-format shapes. The settings
are tuned to reach COCO mAP@[.5:.95] >= 0.5 on the held-out images in a few minutes on two CPU
cores (the run in the README's Performance table); the run resumes if interrupted (same command).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ssd.cli.ranges import COUNT

CONFIG = "demo_ssdlite_160"
IMAGE_SIZE = (160, 160)
NUM_IMAGES = 1600  # every fifth held out for validation
OBJECT_SIZE = (0.15, 0.45)  # of the image side: 24-72 px, large enough for the stride-16 first map
EPOCHS = 12
DETECTION_THRESHOLD = 0.4  # for the annotated picture only; evaluation keeps the reference's 0.05


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="train and evaluate a small detector on built-in synthetic data")
    parser.add_argument("--output", type=Path, default=Path("demo_output"), help="data, checkpoints and pictures go here")
    parser.add_argument("--epochs", type=COUNT, default=EPOCHS)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ssd.data.synth import synth_coco
    from ssd.engine.fit import fit
    from ssd.engine.options import TrainOptions

    data = args.output / "data"
    if not (data / "annotations" / "instances_val2017.json").is_file():
        print(f"generating {NUM_IMAGES} synthetic images in {data} ...", flush=True)
        synth_coco(data, NUM_IMAGES, size=IMAGE_SIZE, seed=0, object_size=OBJECT_SIZE)
    run_folder = args.output / "run"
    options = TrainOptions(
        config=CONFIG, data_path=data, dataset="coco", epochs=args.epochs, batch_size=16, optimizer="adamw", lr=0.004,
        weight_decay=0.05, warmup=30, multistep=[args.epochs - 3, args.epochs - 1], augment="flip", num_workers=1,
        save_folder=run_folder, device="cpu",
    )
    result = fit(options)
    picture = args.output / "prediction.jpg"
    write_prediction(run_folder / "last.pth", data, picture)
    report = write_evaluation_report(run_folder / "last.pth", data, args.output / f"evaluation_ep{result.epochs_completed}")
    print(f"checkpoints, metrics.csv and TensorBoard logs: {run_folder}; annotated validation image: {picture}; report: {report}")
    print(f"mAP@[.5:.95] = {result.last_map:.3f}")
    return 0


def write_evaluation_report(checkpoint: Path, data: Path, folder: Path) -> Path:
    """``ssd evaluate --report`` of the final model into ``folder`` (once per epoch: a finished demo run again keeps it)."""
    from ssd.cli.main import build_parser

    page = folder / "report.html"
    if not page.is_file():
        args = build_parser().parse_args([
            "evaluate", "--config", CONFIG, "--dataset", "coco", "--data-path", str(data), "--pretrained-model", str(checkpoint),
            "--device", "cpu", "--num-workers", "1", "--output-dir", str(folder), "--report",
        ])
        args.run(args)
    return page


def write_prediction(checkpoint: Path, data: Path, picture: Path) -> None:
    """Draw the final model's detections on the validation image with the most objects."""
    from torchvision.io import ImageReadMode, decode_image, write_jpeg

    from ssd.data.kinds import build_dataset
    from ssd.inference import Detector
    from ssd.visualize import draw_detections

    detector = Detector.from_checkpoint(checkpoint, CONFIG, score_threshold=DETECTION_THRESHOLD)
    dataset = build_dataset("coco", data, "val", detector.config)
    index = max(range(len(dataset)), key=lambda i: len(dataset.target_pixels(i)[0]))
    path = dataset.image_path(index)
    (result,) = detector([path])
    original = decode_image(str(path), mode=ImageReadMode.RGB)
    drawn = draw_detections(original, result["boxes"], result["labels"], result["scores"], detector.class_names, thickness=1)
    picture.parent.mkdir(parents=True, exist_ok=True)
    write_jpeg(drawn, str(picture), quality=95)
    logging.getLogger(__name__).info("%d detections drawn on %s", len(result["boxes"]), path)
