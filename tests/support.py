"""What several test modules (and the benchmarks) share: the tiny config, the tiny model's files,
checkpoints laid out as training writes them, synthetic images and Cognata frames, the seed scripts
run in-process, a plain training epoch, every numeric flag of the commands, the report page's numbers.
The fixtures that build them once per run are in ``conftest.py``; no test module imports another."""
from __future__ import annotations

import argparse
import csv
import runpy
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ssd import load_config
from ssd.amp import MixedPrecision
from ssd.anchors import default_boxes
from ssd.cli.main import build_parser
from ssd.cli.ranges import Number
from ssd.data.labels import cognata_fixed
from ssd.data.synth import COGNATA_CAMERA, COGNATA_CLASSES, COGNATA_SCENARIO, draw_frame, synth_cognata
from ssd.engine.train import TrainingStep, train_one_epoch
from ssd.heap_retention import no_step_hook
from ssd.loss import MultiBoxLoss
from ssd.matching import TargetEncoder
from ssd.models import build_model

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 15  # the fixed Cognata map the synthetic data uses
TINY_YAML = """
model:
  image_size: [64, 128]
  steps: [8, 16]
  scales: [16, 32, 64]
  aspect_ratios: [[2], []]
  middle_blocks:
    - {kernel_size: [1, 3], padding: [0, 1], stride: [1, 2]}
  head:
    num_defaults: [3, 2]
    loc: [{kernel_size: 3, padding: 1}, {kernel_size: 3, padding: 1}]
    conf: [{kernel_size: 3, padding: 1}, {kernel_size: 3, padding: 1}]
"""


@dataclass(frozen=True)
class TinyFiles:
    config: Path
    checkpoint: Path
    data: Path
    folder: Path


def save_checkpoint(path: Path, model: torch.nn.Module, config_path: Path, epoch: int = 0) -> Path:
    """A checkpoint laid out as ``ssd.engine.fit`` writes them (without optimiser state)."""
    labels = cognata_fixed()
    torch.save({
        "epoch": epoch, "model_state_dict": model.state_dict(),
        "config": {"name": config_path.stem, "source": str(config_path), "text": config_path.read_text()},
        "arch": "ssd", "num_classes": labels.num_classes, "class_names": list(labels.class_names), "label_map": labels.to_dict(),
    }, path)
    return path


def write_image(path: Path, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A synthetic RGB image of ``size`` (H, W) saved losslessly; returns its pixels."""
    image, _ = draw_frame(np.random.default_rng(seed), *size, COGNATA_CLASSES, (1, 3))
    Image.fromarray(image).save(path)
    return image


def assert_same_detections(a: dict, b: dict, atol: float = 1e-2) -> None:
    """Equal up to float noise, which may swap detections of near-equal score."""
    torch.testing.assert_close(a["scores"], b["scores"], rtol=1e-4, atol=1e-5)
    distance = (a["boxes"][:, None, :] - b["boxes"][None, :, :]).abs().amax(dim=2)  # [K, K]
    distance[a["labels"][:, None] != b["labels"][None, :]] = float("inf")
    assert distance.amin(dim=1).max() < atol and distance.amin(dim=0).max() < atol


def build_tiny_files(folder: Path) -> TinyFiles:
    """A tiny config, a checkpoint of a random model with damped heads (saved as training saves them)
    and a small synthetic Cognata dataset, under ``folder``."""
    config_path = folder / "tiny.yaml"
    config_path.write_text(TINY_YAML)
    torch.manual_seed(0)
    model = build_model(load_config(config_path), NUM_CLASSES)
    with torch.no_grad():  # random heads saturate the softmax (tied scores) and the box offsets
        for scale, head in ((0.05, model.loc), (0.15, model.conf)):
            for parameter in head.parameters():
                parameter.mul_(scale)
    checkpoint = save_checkpoint(folder / "tiny.pth", model, config_path)
    data = synth_cognata(folder / "cognata", 20, size=(72, 120), seed=1).root
    return TinyFiles(config_path, checkpoint, data, folder)


ONE_BOX = [{"boxes": torch.tensor([[0.1, 0.1, 0.5, 0.5]]), "labels": torch.tensor([1])}] * 2


def train_epoch(model, config, loader, epoch: int = 0, precision: str = "fp32", channels_last: bool = False, after_step=no_step_hook):
    """One ``train_one_epoch`` of ``model`` over ``loader`` with plain SGD on the CPU."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    cpu = torch.device("cpu")
    step = TrainingStep(model, TargetEncoder(default_boxes(config)), optimizer, MixedPrecision(cpu, precision), cpu, scheduler,
                        MultiBoxLoss(), channels_last=channels_last)
    return train_one_epoch(step, loader, epoch, show_progress=False, after_step=after_step)


def metrics_rows(folder: Path) -> list[dict[str, str]]:
    """The rows of a training run's ``metrics.csv``."""
    with open(folder / "metrics.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def model_flags(files: TinyFiles) -> list[str]:
    return ["--config", str(files.config), "--pretrained-model", str(files.checkpoint), "--device", "cpu"]


def run_script(name: str, argv: list[str]) -> int:
    """Run a root script of the repository in this process, as ``python NAME ARGV``."""
    old = sys.argv
    sys.argv = [name, *argv]
    try:
        runpy.run_path(str(ROOT / name), run_name="__main__")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv = old
    return 0


def synthetic_case(
    seed: int,
    *,
    num_images: int = 40,
    num_categories: int = 6,
    objects_per_image: float = 7.0,
    dets_per_image: int = 20,
    overfull_images: int = 2,
    crowd_fraction: float = 0.1,
    empty_fraction: float = 0.15,
    size: tuple[int, int] = (640, 480),
) -> tuple[dict, list[dict]]:
    """COCO ground truth and detections exercising every rule of COCOeval.

    Categories are 1..num_categories (named ``c<id>``); the last one has no ground truth (only false
    positives) and the one before it no detections. Image ids are not contiguous. About
    ``empty_fraction`` of the images have no ground truth (but may have detections); about
    ``crowd_fraction`` of the boxes are crowd regions; box sides are log-uniform in 4..320 px, so
    small, medium and large areas all occur. Each image gets ``dets_per_image`` detections: noisy
    copies of its ground truth (some with the wrong class) and random boxes; the first
    ``overfull_images`` non-empty images get 150 more of one class (over the 100 of maxDets).
    Coordinates are multiples of 0.25 and scores float32 values, so float32 copies (torchmetrics)
    stay exact.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    no_gt_category, no_det_category = num_categories, num_categories - 1
    images, annotations, detections = [], [], []
    overfull_left = overfull_images

    def random_boxes(n: int) -> np.ndarray:
        """[n, 4] xyxy boxes inside the image, quantised to 0.25 px."""
        sides = np.exp(rng.uniform(np.log(4), np.log(320), size=(n, 2)))
        x1 = rng.uniform(0, width - sides[:, 0])
        y1 = rng.uniform(0, height - sides[:, 1])
        return np.round(np.stack([x1, y1, x1 + sides[:, 0], y1 + sides[:, 1]], axis=1) * 4) / 4

    def add_detections(image_id: int, boxes: np.ndarray, labels: np.ndarray) -> None:
        labels = np.where(labels == no_det_category, no_gt_category, labels)
        scores = rng.random(len(boxes)).astype(np.float32)
        for (x1, y1, x2, y2), label, score in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
            detections.append({"image_id": image_id, "category_id": label, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})

    for i in range(num_images):
        image_id = 1000 + 7 * i
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id}.png"})
        count = 0 if rng.random() < empty_fraction else max(1, rng.poisson(objects_per_image))
        boxes = random_boxes(count)
        labels = rng.integers(1, no_gt_category, size=count)  # never the no-ground-truth category
        for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()):
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": label,
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": (x2 - x1) * (y2 - y1),
                "iscrowd": int(rng.random() < crowd_fraction),
            })

        hits = rng.random(count) < 0.8  # noisy copies of most ground-truth boxes
        jitter = rng.normal(0, 0.08, size=(int(hits.sum()), 4)) * np.tile(boxes[hits, 2:] - boxes[hits, :2], 2)
        det_boxes = np.round((boxes[hits] + jitter) * 4) / 4
        det_boxes[:, 2:] = np.maximum(det_boxes[:, 2:], det_boxes[:, :2])
        det_labels = labels[hits].copy()
        wrong = rng.random(len(det_labels)) < 0.1
        det_labels[wrong] = rng.integers(1, num_categories + 1, size=int(wrong.sum()))
        extra = max(dets_per_image - len(det_boxes), 0)
        det_boxes = np.concatenate([det_boxes, random_boxes(extra)])[:dets_per_image]
        det_labels = np.concatenate([det_labels, rng.integers(1, num_categories + 1, size=extra)])[:dets_per_image]
        add_detections(image_id, det_boxes, det_labels)
        if count and overfull_left:
            overfull_left -= 1
            add_detections(image_id, random_boxes(150), np.full(150, labels[0]))

    categories = [{"id": c, "name": f"c{c}"} for c in range(1, num_categories + 1)]
    return {"info": {}, "images": images, "annotations": annotations, "categories": categories}, detections


LEARNING_YAML = """
model:
  arch: ssdlite
  image_size: [96, 96]
  steps: [16, 32, 48, 96, 96, 96]
  scales: [16, 28, 44, 60, 72, 84, 96]
  aspect_ratios: [[2, 1/2], [2, 1/2], [2, 1/2], [2, 1/2], [2, 1/2], [2, 1/2]]
"""


def learning_argv(config: Path, data: Path, out: Path, epochs: int) -> list[str]:
    """``ssd train`` arguments of the recipe (also ``benchmarks/bench_quantized_accuracy.py``'s)."""
    return [
        "train", "--config", str(config), "--dataset", "coco", "--data-path", str(data), "--save-folder", str(out),
        "--epochs", str(epochs), "--batch-size", "16", "--optimizer", "adamw", "--lr", "0.012", "--weight-decay", "0.05",
        "--warmup", "30", "--multistep", str(epochs - 2), str(epochs - 1), "--augment", "flip", "--num-workers", "0",
        "--device", "cpu", "--no-progress", "--seed", "0", "--checkpoint-freq", str(epochs),  # epoch files: the last one only
    ]


def command_parsers(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()):
    """(command words, parser) for the ``ssd`` parser and every sub-command's."""
    yield prefix, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from command_parsers(child, (*prefix, name))


def numeric_flags() -> list[tuple[tuple[str, ...], str, Number]]:
    """(command words, flag, its declared range) for every numeric flag of every ``ssd`` command."""
    flags = []
    for words, parser in command_parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action.type, Number):
                flags.append((words, action.option_strings[0], action.type))
    return flags


COGNATA_HEADER = ["object_id", "object_class", "object_class_name", "bounding_box_2D", "center_distance", "occlusion"]


def write_frame(root: Path, frame: str, rows: list[list[str]] | None, header=COGNATA_HEADER, image: bool = True, size=(48, 64)) -> None:
    """One Cognata frame as the dataset lays it out: a grey PNG (unless ``image`` is false) and its CSV (unless ``rows`` is None)."""
    png_dir, ann_dir = root / COGNATA_SCENARIO / f"{COGNATA_CAMERA}_png", root / COGNATA_SCENARIO / f"{COGNATA_CAMERA}_ann"
    png_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    if image:
        Image.fromarray(np.full((*size, 3), 90, np.uint8)).save(png_dir / f"{frame}.png")
    if rows is not None:
        with open(ann_dir / f"{frame}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)


class PageNumbers(HTMLParser):
    """Every ``data-key`` of the page with its text."""

    def __init__(self):
        super().__init__()
        self.numbers: dict[str, str] = {}
        self._key: str | None = None
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._key = attrs.get("data-key")
        for name in ("src", "href"):
            if attrs.get(name) and not (attrs[name].startswith("data:") or attrs[name].startswith("#")):
                self.external.append(attrs[name])

    def handle_data(self, data):
        if self._key is not None:
            self.numbers[self._key] = data
            self._key = None


def page_value(numbers: dict, key: str):
    """The report dict's value at a page key (``breakdowns.distance.cells.0-50 m.c1.AP``)."""
    node = numbers
    parts = key.split(".")
    while parts:
        for size in range(len(parts), 0, -1):  # keys may hold dots ("1.5-2 m"): the longest that exists
            head = ".".join(parts[:size])
            if isinstance(node, dict) and head in node:
                node, parts = node[head], parts[size:]
                break
        else:
            raise KeyError(key)
    return node
