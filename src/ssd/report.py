"""The evaluation report of a run's detections: ``report.html`` and ``report.json`` beside them.

Made from COCO ground truth and ``detections.json`` without running a model: :func:`write_report`
for what is in memory (``ssd evaluate --report``), :func:`report_of_folder` for an evaluation's
folder, whose ``metrics.json`` says which dataset, split and config it scored. The worst frames are
read from the dataset and drawn with their ground truth and detections.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ssd.atomic_file import write_atomically
from ssd.errors import SSDError, parameter
from ssd.evaluation.boxes import coco_boxes_xyxy
from ssd.evaluation.coco_eval import collection_paused, restricted
from ssd.evaluation.report import Report, ReportSettings, build_report, compare
from ssd.evaluation.report_html import render_html

REPORT_FILES = ("report.html", "report.json")
THUMBNAIL_WIDTH, FULL_WIDTH = 480, 1920
TRUTH_COLOUR = (40, 220, 40)


class ReportError(SSDError):
    """An evaluation folder the report cannot be made from; the message names the file."""


@dataclass(frozen=True)
class Source:
    """Where a report's numbers come from: COCO ground truth (its categories name the classes),
    COCO-results detections, the training curves (``metrics.csv`` rows) and a reader of image ``i`` (uint8 ``[3, H, W]``)."""

    ground_truth: Mapping[str, Any]
    detections: Sequence[Mapping[str, Any]]
    training: Sequence[Mapping[str, Any]] = ()
    read_image: Callable[[int], torch.Tensor] | None = None
    checkpoint: str | None = None  # what made the detections, for the title
    detections_name: str = "detections"  # where they were read, for error messages
    thresholds: str = "coco"  # COCOeval's or torchmetrics' (MLPerf's), as the headline was scored


def report_title(source: Source, folder: Path) -> str:
    """The page's title: the checkpoint evaluated, else the folder."""
    return f"Evaluation report: {Path(source.checkpoint).name if source.checkpoint else folder.resolve().name}"


def write_report(out_dir: Path, title: str, source: Source, settings: ReportSettings = ReportSettings(),
                 compared: tuple[str, Sequence[Mapping[str, Any]]] | None = None) -> Report:
    """Build the report and write ``report.json`` and the self-contained ``report.html`` under ``out_dir``;
    ``compared``: another run's (its detections' file, detections) on the same ground truth, shown as differences.
    The headline is scored with the source's thresholds, as it was scored when it was made."""
    settings = replace(settings, thresholds=source.thresholds)
    with collection_paused():  # the detections' millions of objects stay alive throughout
        report = build_report(title, source.ground_truth, source.detections, settings, training=source.training,
                              detections_name=source.detections_name)
        numbers = report.to_dict()
        if compared is not None:
            other = build_report(compared[0], source.ground_truth, compared[1], settings, detections_name=compared[0]).to_dict()
            numbers["comparison"] = compare(numbers, other, settings.worst_frames)
        images = _draw_worst(report, source, settings.score_threshold) if source.read_image is not None else {}
        out_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(out_dir / REPORT_FILES[1], json.dumps(numbers, indent=1).encode())
        write_atomically(out_dir / REPORT_FILES[0], render_html(numbers, images).encode())
    return report


def scored_ground_truth(ground_truth: Mapping[str, Any], unreadable: Sequence[str], root: Path) -> dict[str, Any]:
    """``ground_truth`` without the images an evaluation could not read, as it was scored: ``unreadable``
    holds their paths as the loader names them (under the dataset's ``root``; ``file_name`` is relative to it)."""
    left_out = {str(Path(path)) for path in unreadable}
    return restricted(ground_truth, [image["id"] for image in ground_truth["images"] if str(root / str(image.get("file_name"))) not in left_out])


def report_of_folder(folder: Path, *, config: str | Path | None = None, data_path: Path | None = None, dataset: str | None = None,
                     file_list: Path | None = None, cache_dir: Path | None = None) -> Source:
    """The :class:`Source` of an ``ssd evaluate`` folder (``detections.json``, ``metrics.json``), its
    dataset rebuilt from what ``metrics.json`` records unless given here."""
    from ssd.config import load_config
    from ssd.data.kinds import dataset_kind

    metrics = _read_json(folder / "metrics.json")
    detections = _read_json(folder / "detections.json")
    if not isinstance(metrics, dict) or not isinstance(detections, list):
        raise ReportError(f"{folder}: metrics.json must hold an object and detections.json a list (an ssd evaluate folder)")
    recorded = {"config": metrics.get("config_file") or metrics.get("config"), "data_path": metrics.get("data_path"),
                "dataset": metrics.get("dataset"), "file_list": metrics.get("file_list")}
    chosen = {"config": config, "data_path": data_path, "dataset": dataset, "file_list": file_list}
    values = {name: chosen[name] if chosen[name] is not None else recorded[name] for name in chosen}
    for name in ("config", "data_path", "dataset"):
        if values[name] is None:
            raise ReportError(f"{folder / 'metrics.json'} does not record the {name}; give {parameter(name)}")
    loaded = load_config(values["config"])
    kind = dataset_kind(values["dataset"])
    data = kind.build(Path(values["data_path"]), "val", loaded, file_list=values["file_list"], cache_dir=cache_dir)
    ground_truth = scored_ground_truth(data.coco_ground_truth(), (metrics.get("unreadable") or {}).get("images", []), data.root)
    training = training_rows(metrics.get("checkpoint"), folder)
    thresholds = metrics.get("thresholds") if metrics.get("thresholds") in ("coco", "torchmetrics") else "coco"
    return Source(ground_truth, detections, training, dataset_reader(data), metrics.get("checkpoint"), str(folder / "detections.json"), thresholds)


def report_of_loadgen_run(folder: Path, *, config: str | Path | None, data_path: Path | None = None, dataset: str | None = None,
                          split: str | None = None, file_list: Path | None = None, cache_dir: Path | None = None) -> Source:
    """The :class:`Source` of an ``ssd loadgen --accuracy`` folder: the detections of its
    ``mlperf_log_accuracy.json`` on the samples it holds (as its ``accuracy.txt`` scored them). The
    dataset is the one its ``ssd_run.json`` records unless given; the config must be given, and both
    it and a file list must be the ones the run recorded (by digest)."""
    from ssd.config import load_config
    from ssd.data.kinds import dataset_kind
    from ssd.loadgen import ACCURACY_LOG, accuracy_log_detections
    from ssd.run_record import RECORD_NAME, file_digest, text_digest

    record = _read_json(folder / RECORD_NAME) if (folder / RECORD_NAME).is_file() else {}
    recorded = record.get("dataset") or {} if isinstance(record, dict) else {}
    if config is None:
        raise ReportError(f"{folder}: a LoadGen run records its config's digest, not the config: give {parameter('config')}")
    loaded = load_config(config)
    config_digest = (record.get("config") or {}).get("sha256") if isinstance(record, dict) else None
    if config_digest is not None and config_digest != text_digest(loaded.text):
        raise ReportError(f"{folder / RECORD_NAME}: the run used another config than {config} (its sha256 differs)")
    list_digest = recorded.get("file_list_sha256")
    if (list_digest is None) != (file_list is None) or (file_list is not None and list_digest is not None and file_digest(file_list) != list_digest):
        needed = (f"no file list: leave out {parameter('file_list')}" if list_digest is None
                  else f"the file list of sha256 {list_digest[:12]}...: give that {parameter('file_list')}")
        raise ReportError(f"{folder / RECORD_NAME}: the run used {needed}")
    kind, path = dataset or recorded.get("kind"), data_path or recorded.get("path")
    if kind is None or path is None:
        raise ReportError(f"{folder}: no {RECORD_NAME} records the dataset; give {parameter('dataset')} and {parameter('data_path')}")
    data = dataset_kind(kind).build(Path(path), split or recorded.get("split") or "val", loaded, file_list=file_list, cache_dir=cache_dir)
    detections, image_ids = accuracy_log_detections(folder / ACCURACY_LOG, data)
    model = (record.get("model") or {}).get("file") if isinstance(record, dict) else None
    return Source(restricted(data.coco_ground_truth(), image_ids), detections, (), dataset_reader(data), model, str(folder / ACCURACY_LOG),
                  "torchmetrics")


def detections_of_folder(folder: Path) -> list[dict[str, Any]]:
    """An evaluation folder's ``detections.json``."""
    detections = _read_json(folder / "detections.json")
    if not isinstance(detections, list):
        raise ReportError(f"{folder / 'detections.json'}: must hold a JSON list of detections")
    return detections


def dataset_reader(data: Any) -> Callable[[int], torch.Tensor]:
    """A reader of a dataset's image by its image id (the id the ground truth and detections use), as
    uint8 in the stored layout the annotations refer to; preprocessed frames are denormalised."""
    from ssd.visualize import denormalize

    index_of = {int(image_id): k for k, image_id in enumerate(data.annotations.image_ids.tolist())}

    def read(image_id: int) -> torch.Tensor:
        image = data.load_image(index_of[image_id])
        return image if image.dtype == torch.uint8 else denormalize(image)

    return read


def _read_json(path: Path) -> Any:
    try:
        with path.open("rb") as handle, collection_paused():
            return json.load(handle)
    except FileNotFoundError:
        raise ReportError(f"{path}: missing (an ssd evaluate folder has detections.json and metrics.json)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from None


def training_rows(checkpoint: str | Path | None, folder: Path) -> list[dict[str, str]]:
    """The training curves: ``metrics.csv`` of the run the checkpoint is in, else of the evaluation's folder."""
    for candidate in ([Path(checkpoint).parent / "metrics.csv"] if checkpoint else []) + [folder / "metrics.csv"]:
        if candidate.is_file():
            with candidate.open(newline="") as handle:
                return list(csv.DictReader(handle))
    return []


def _draw_worst(report: Report, source: Source, score_threshold: float) -> dict[int, tuple[bytes, bytes]]:
    """Each worst frame drawn with its ground truth and its detections above the threshold, as JPEG
    thumbnail and full frame (at most :data:`FULL_WIDTH` wide)."""
    from ssd.visualize import draw_detections

    categories = sorted((c["id"], str(c["name"])) for c in source.ground_truth["categories"])
    names = [name for _, name in categories]
    row_of = {category_id: k for k, (category_id, _) in enumerate(categories)}
    wanted = {frame.image_id for frame in report.worst}
    truths: dict[int, list[Mapping[str, Any]]] = {i: [] for i in wanted}
    for ann in source.ground_truth["annotations"]:
        if ann["image_id"] in wanted and not ann.get("iscrowd", 0):
            truths[ann["image_id"]].append(ann)
    found: dict[int, list[Mapping[str, Any]]] = {i: [] for i in wanted}
    for det in source.detections:
        if det["image_id"] in wanted and float(det["score"]) >= score_threshold:
            found[det["image_id"]].append(det)
    out = {}
    for image_id in wanted:
        image = source.read_image(image_id)
        thickness = max(2, image.shape[-1] // 800)
        gt = truths[image_id]
        image = draw_detections(image, torch.from_numpy(coco_boxes_xyxy([g["bbox"] for g in gt])), torch.zeros(len(gt), dtype=torch.long), None,
                                ["truth"], thickness=thickness, colour=TRUTH_COLOUR)
        dets = found[image_id]
        image = draw_detections(image, torch.from_numpy(coco_boxes_xyxy([d["bbox"] for d in dets])), torch.tensor([row_of[d["category_id"]] + 1 for d in dets], dtype=torch.long),
                                torch.tensor([float(d["score"]) for d in dets]), ["background", *names], thickness=thickness)
        out[image_id] = (_jpeg(image, THUMBNAIL_WIDTH), _jpeg(image, FULL_WIDTH))
    return out


def _jpeg(image: torch.Tensor, width: int) -> bytes:
    from PIL import Image

    picture = Image.fromarray(image.permute(1, 2, 0).contiguous().numpy())
    if picture.width > width:
        picture = picture.resize((width, round(picture.height * width / picture.width)), Image.BILINEAR)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()
