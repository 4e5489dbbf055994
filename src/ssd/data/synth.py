"""Synthetic detection data in the real on-disk formats: the project's built-in data for demos and tests.

Each class is a filled shape of its own colour (rectangle, ellipse, triangle, diamond) on a muted,
mildly noisy background, so a small SSD learns them quickly; boxes are the exact pixel extents of
what was drawn (tight), objects never overlap, sizes span small to large, some objects are cut by
the image border and some frames are empty. Cognata frames also list rows the loader's rules must
drop: ignored classes (drawn as grey poles), objects beyond 300 m and objects under 8 px (these two
not drawn, as a camera would barely see them). Everything is a function of the seed.
"""
from __future__ import annotations

import csv
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

COGNATA_SCENARIO = "10001_Urban_Clear_Noon"
COGNATA_CAMERA = "Cognata_Camera_01_8M"
# the columns of a Cognata CSV written here; the loader needs four of them, found by name
COGNATA_COLUMNS = (
    "object_id", "object_class_name", "truncation", "bounding_box_2D", "object_class", "occlusion",
    "center_distance", "bounding_box_3D",
)
EMPTY_FRACTION = 0.08  # frames drawn without objects
BORDER_FRACTION = 0.15  # objects placed across an image border
NOISE = 6  # background and object noise, +- grey levels
# learnable objects are drawn at least this big, so that every one passes the Cognata size rule
MIN_DRAWN_SIDE = 8
MIN_DRAWN_AREA = 50
PARALLEL_MIN_IMAGES = 64
OBJECT_SIZE = (0.06, 0.45)  # of the short side: about a quarter of objects small (< 32 px at 300)


@dataclass(frozen=True)
class ShapeClass:
    """A learnable class: its id and name in the dataset format, shape, RGB colour, width/height range."""

    class_id: int
    name: str
    shape: str
    color: tuple[int, int, int]
    aspect: tuple[float, float]


COGNATA_CLASSES = (
    ShapeClass(8, "Car", "rectangle", (215, 40, 40), (1.3, 2.2)),
    ShapeClass(14, "Pedestrian", "ellipse", (40, 200, 70), (0.4, 0.7)),
    ShapeClass(33, "TrafficSign", "triangle", (40, 90, 225), (0.9, 1.2)),
    ShapeClass(28, "Traffic_light", "diamond", (240, 205, 30), (0.6, 0.9)),
)
COGNATA_POLE = ShapeClass(2, "Pole", "rectangle", (150, 150, 150), (0.08, 0.15))  # an ignored class
COCO_CLASSES = (
    ShapeClass(1, "person", "ellipse", (40, 200, 70), (0.4, 0.7)),
    ShapeClass(3, "car", "rectangle", (215, 40, 40), (1.3, 2.2)),
    ShapeClass(10, "traffic light", "diamond", (240, 205, 30), (0.6, 0.9)),
    ShapeClass(13, "stop sign", "triangle", (40, 90, 225), (0.9, 1.2)),
)


@dataclass(frozen=True)
class SynthResult:
    """What was written: the dataset root, images, and drawn (annotated) objects."""

    root: Path
    images: int
    objects: int


@dataclass
class _Drawn:
    shape_class: ShapeClass
    box: tuple[int, int, int, int]  # x1, y1, x2, y2: exact extents of the drawn pixels
    area: int  # drawn pixels
    truncated: bool


Nominal = tuple[float, float, float, float]  # x, y, w, h of a shape, may reach past the borders


def _shape_mask(shape: str, window: tuple[int, int, int, int], nominal: Nominal) -> np.ndarray:
    """Boolean mask of a shape over integer ``window`` (x0, y0, x1, y1), nominal box (x, y, w, h)."""
    x0, y0, x1, y1 = window
    x, y, w, h = nominal
    u = (np.arange(x0, x1) + 0.5 - (x + w / 2)) / (w / 2)
    v = (np.arange(y0, y1) + 0.5 - (y + h / 2)) / (h / 2)
    u, v = np.abs(u)[None, :], v[:, None]
    if shape == "rectangle":
        return (u <= 1) & (np.abs(v) <= 1)
    if shape == "ellipse":
        return u**2 + v**2 <= 1
    if shape == "diamond":
        return u + np.abs(v) <= 1
    return (u <= (v + 1) / 2) & (np.abs(v) <= 1)  # triangle, apex up


def _place(
    rng: np.random.Generator, height: int, width: int, shape_class: ShapeClass, taken: list[Nominal], side_range: tuple[float, float]
) -> Nominal | None:
    """A nominal (x, y, w, h) not overlapping ``taken`` (a margin of 2 px), or None after 30 tries."""
    low, high = side_range
    for _ in range(30):
        side = math.exp(rng.uniform(math.log(low), math.log(high)))
        aspect = rng.uniform(*shape_class.aspect)
        w, h = side * math.sqrt(aspect), side / math.sqrt(aspect)
        if w >= width or h >= height:
            continue
        x, y = rng.uniform(0, width - w), rng.uniform(0, height - h)
        if rng.random() < BORDER_FRACTION:  # push across one border by up to 30 %
            edge, cut = rng.integers(4), rng.uniform(0, 0.3)
            x = (-cut * w, width - (1 - cut) * w, x, x)[edge]
            y = (y, y, -cut * h, height - (1 - cut) * h)[edge]
        if all(x + w + 2 <= a or a + c + 2 <= x or y + h + 2 <= b or b + d + 2 <= y for a, b, c, d in taken):
            taken.append((x, y, w, h))
            return x, y, w, h
    return None


def _draw(image: np.ndarray, rng: np.random.Generator, shape_class: ShapeClass, nominal: Nominal, learnable: bool) -> _Drawn | None:
    """Paint the shape's visible part; None when nothing shows or a learnable object would be too small."""
    height, width = image.shape[:2]
    x, y, w, h = nominal
    window = (max(0, math.floor(x)), max(0, math.floor(y)), min(width, math.ceil(x + w)), min(height, math.ceil(y + h)))
    mask = _shape_mask(shape_class.shape, window, nominal)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    box_w, box_h = int(cols[-1] - cols[0]) + 1, int(rows[-1] - rows[0]) + 1
    if learnable and (min(box_w, box_h) < MIN_DRAWN_SIDE or box_w * box_h < MIN_DRAWN_AREA):
        return None
    color = np.clip(np.array(shape_class.color) + rng.integers(-20, 21, 3), 0, 255).astype(np.uint8)
    image[window[1] : window[3], window[0] : window[2]][mask] = color
    box = (window[0] + int(cols[0]), window[1] + int(rows[0]), window[0] + int(cols[-1]) + 1, window[1] + int(rows[-1]) + 1)
    truncated = x < 0 or y < 0 or x + w > width or y + h > height
    return _Drawn(shape_class, box, int(mask.sum()), truncated)


def draw_frame(
    rng: np.random.Generator,
    height: int,
    width: int,
    classes: tuple[ShapeClass, ...],
    objects: tuple[int, int],
    extra: tuple[ShapeClass, ...] = (),
    object_size: tuple[float, float] = OBJECT_SIZE,
) -> tuple[np.ndarray, list[_Drawn]]:
    """One image ``[H, W, 3]`` uint8 and its drawn objects; ``extra`` classes (e.g. poles) drawn 0-2 times.

    ``object_size`` bounds an object's nominal side as fractions of the image's short side (never
    under 10 px).
    """
    base = rng.integers(70, 170) + rng.integers(-12, 13, 3)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = base.astype(np.uint8)
    short = min(height, width)
    side_range = (max(10.0, object_size[0] * short), object_size[1] * short)
    count = 0 if rng.random() < EMPTY_FRACTION else int(rng.integers(objects[0], objects[1] + 1))
    taken: list[Nominal] = []
    drawn = []
    plan = [classes[int(rng.integers(len(classes)))] for _ in range(count)]
    plan += [c for c in extra for _ in range(int(rng.integers(0, 3)))]
    for shape_class in plan:
        nominal = _place(rng, height, width, shape_class, taken, side_range)
        if nominal is not None and (item := _draw(image, rng, shape_class, nominal, shape_class in classes)) is not None:
            drawn.append(item)
    noise = rng.integers(-NOISE, NOISE + 1, (height, width, 1), dtype=np.int16)
    image = np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return image, drawn


def _box_text(box) -> str:
    return "[" + ", ".join(f"{v:g}" for v in box) + "]"


def _parallel(function, jobs: list) -> list:
    """``[function(*job) for job in jobs]``, over processes when there are many (PNG encoding dominates)."""
    workers = min(os.cpu_count() or 1, 8)
    if workers <= 1 or len(jobs) < PARALLEL_MIN_IMAGES:
        return [function(*job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(function, *zip(*jobs), chunksize=max(1, len(jobs) // (workers * 4))))


def _cognata_frame(png_dir: Path, ann_dir: Path, seed: int, i: int, size: tuple[int, int], objects: tuple[int, int]) -> int:
    """Write frame ``i`` (PNG and CSV); returns its number of learnable objects."""
    height, width = size
    rng = np.random.default_rng([seed, i])
    image, drawn = draw_frame(rng, height, width, COGNATA_CLASSES, objects, extra=(COGNATA_POLE,))
    frame = f"{100 + 33 * i:010d}"
    Image.fromarray(image).save(png_dir / f"{frame}.png", compress_level=1)
    rows = [(item.shape_class, item.box, rng.uniform(5, 250), item.truncated) for item in drawn]
    for _ in range(int(rng.integers(0, 3))):  # far objects and specks: listed, not drawn
        shape_class = COGNATA_CLASSES[int(rng.integers(len(COGNATA_CLASSES)))]
        far = rng.random() < 0.5
        side = rng.uniform(0.04, 0.1) * min(height, width) if far else rng.uniform(2, 7)
        x, y = rng.uniform(0, width - side), rng.uniform(0, height - side)
        box = (round(x), round(y), round(x + side), round(y + side))
        rows.append((shape_class, box, rng.uniform(301, 600) if far else rng.uniform(50, 250), False))
    with open(ann_dir / f"{frame}.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COGNATA_COLUMNS)
        for k, (shape_class, box, distance, truncated) in enumerate(rows):
            writer.writerow([
                k + 1, shape_class.name, int(truncated), _box_text(box), shape_class.class_id,
                round(float(rng.uniform(0, 0.3)), 3), round(float(distance), 2), _box_text((box[0], box[1], 0.0, box[2], box[3], 1.5)),
            ])
    return sum(item.shape_class is not COGNATA_POLE for item in drawn)


def synth_cognata(
    out: str | Path,
    num_images: int,
    size: tuple[int, int] = (300, 300),
    seed: int = 0,
    objects: tuple[int, int] = (1, 8),
    scenario: str = COGNATA_SCENARIO,
    camera: str = COGNATA_CAMERA,
) -> SynthResult:
    """Write ``num_images`` Cognata frames of ``size`` (H, W) under ``out/<scenario>/<camera>_{png,ann}``.

    ``objects`` is the (min, max) number of learnable objects drawn per non-empty frame.
    """
    root = Path(out)
    png_dir, ann_dir = root / scenario / f"{camera}_png", root / scenario / f"{camera}_ann"
    png_dir.mkdir(parents=True, exist_ok=True)
    ann_dir.mkdir(parents=True, exist_ok=True)
    counts = _parallel(_cognata_frame, [(png_dir, ann_dir, seed, i, size, objects) for i in range(num_images)])
    return SynthResult(root, num_images, sum(counts))


def _coco_image(
    folder: Path, seed: int, i: int, size: tuple[int, int], objects: tuple[int, int], object_size: tuple[float, float]
) -> tuple[dict, list[dict]]:
    """Write image ``i`` (JPEG); returns its COCO image entry and annotations (ids filled in later)."""
    height, width = size
    rng = np.random.default_rng([seed, i])
    image, drawn = draw_frame(rng, height, width, COCO_CLASSES, objects, object_size=object_size)
    image_id = i + 1
    file_name = f"{image_id:012d}.jpg"
    Image.fromarray(image).save(folder / file_name, quality=95, subsampling=0)
    annotations = []
    for item in drawn:
        x1, y1, x2, y2 = item.box
        annotations.append({
            "image_id": image_id, "category_id": item.shape_class.class_id, "iscrowd": 0, "area": item.area,
            "bbox": [x1, y1, x2 - x1, y2 - y1], "segmentation": [[x1, y1, x2, y1, x2, y2, x1, y2]],
        })
    return {"id": image_id, "file_name": file_name, "width": width, "height": height, "license": 0}, annotations


def synth_coco(
    out: str | Path,
    num_images: int,
    size: tuple[int, int] = (300, 300),
    seed: int = 0,
    objects: tuple[int, int] = (1, 8),
    object_size: tuple[float, float] = OBJECT_SIZE,
) -> SynthResult:
    """Write ``num_images`` COCO 2017-style images (every fifth in ``val2017``) with their JSON files.

    ``object_size``: see :func:`draw_frame`.
    """
    root = Path(out)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    split_of = ["val" if i % 5 == 4 else "train" for i in range(num_images)]
    for name in set(split_of):
        (root / f"{name}2017").mkdir(exist_ok=True)
    results = _parallel(_coco_image, [(root / f"{split_of[i]}2017", seed, i, size, objects, object_size) for i in range(num_images)])
    categories = [{"id": c.class_id, "name": c.name, "supercategory": c.shape} for c in COCO_CLASSES]
    annotation_id = 0
    for name in ("train", "val"):
        data = {"info": {"description": "ssd synthetic COCO-format data", "version": "1.0"}, "licenses": [], "images": [], "annotations": [], "categories": categories}
        for (entry, image_annotations), split in zip(results, split_of):
            if split != name:
                continue
            data["images"].append(entry)
            for annotation in image_annotations:
                annotation_id += 1
                data["annotations"].append({"id": annotation_id, **annotation})
        (root / "annotations" / f"instances_{name}2017.json").write_text(json.dumps(data))
    return SynthResult(root, num_images, sum(len(a) for _, a in results))
