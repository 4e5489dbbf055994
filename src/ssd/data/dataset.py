"""The dataset both formats share: an annotation table in memory, images decoded on demand.

Item contract (what the trainer relies on): ``dataset[i] -> (image, target)`` with ``image`` a
float32 ``[3, H, W]`` tensor (normalised, at the transform's size) and ``target`` a dict with
``boxes`` (float32 ``[G, 4]``, xyxy, normalised to [0, 1] of the image), ``labels`` (int64 ``[G]``,
contiguous 1..C-1), ``image_id`` (int) and ``orig_size`` ((H, W) of the original image).

An image that fails to decode is recorded as a problem. For training (``substitute_unreadable``,
the default) the next readable image is returned in its place (its own ``image_id``), so an epoch
never dies on one bad file; the target then also carries ``load_problems``, which
:class:`ssd.data.loader.DetectionLoader` takes off and records on the main process's dataset (a
worker's copy of the dataset is not the caller's). Evaluation must score each image once and none
twice, so with ``substitute_unreadable`` False the item is ``(None, {"image_id", "orig_size",
"unreadable": Problem})`` and the loader leaves it out of the batch (:attr:`DetectionLoader.unreadable`).

In a loader worker, an :class:`ssd.errors.SSDError` (strict mode, no readable image at all) is
returned as ``(None, {"error": exc})`` rather than raised, so that the loader raises the original
error in the main process instead of PyTorch's wrapper with the worker's traceback.
"""
from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, get_worker_info
from torchvision import tv_tensors
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2 import functional as F

from ssd.data.image_files import apply_orientation, decode_with_pillow, exif_orientation, header_problem, needs_pillow, png_problem
from ssd.data.labels import LabelMap
from ssd.data.problems import CorruptImageError, DataError, Problem, ProblemLog
from ssd.data.transforms import ColorNormalize
from ssd.errors import SSDError

# images tried, from the requested index on, before a run of unreadable images becomes an error
MAX_SUBSTITUTES = 16

Transform = Callable[[tv_tensors.Image, dict[str, Any]], tuple[Tensor, dict[str, Any]]]


def read_image(path: str | Path, expected_size: tuple[int, int] | None = None, *, orient: bool = False) -> Tensor:
    """Decode an image file to a uint8 RGB tensor ``[3, H, W]``.

    JPEG, PNG, WebP and GIF through torchvision; BMP and TIFF through Pillow
    (:mod:`ssd.data.image_files`). ``orient``: apply the file's EXIF orientation (images given for
    prediction; never dataset images, whose annotations refer to the stored layout). Raises
    :class:`CorruptImageError` when the file cannot be read or decoded, or its size is not
    ``expected_size`` (H, W) (annotations would not fit it).
    """
    try:
        data = torch.from_numpy(np.fromfile(path, dtype=np.uint8))
    except OSError as exc:
        raise CorruptImageError(f"cannot read: {exc.strerror or exc}") from exc
    if data.numel() == 0:
        raise CorruptImageError("empty file")
    raw = data.numpy().tobytes()  # the file's bytes, copied once, for the checks and Pillow
    problem = header_problem(raw) or png_problem(raw)  # what would take the process down in a decoder
    if problem is not None:
        raise CorruptImageError(f"cannot decode: {problem}")
    if needs_pillow(raw[:4]):
        image = decode_with_pillow(raw)
    else:
        try:
            with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders in favour of torchcodec
                warnings.simplefilter("ignore", DeprecationWarning)
                image = decode_image(data, mode=ImageReadMode.RGB)
        except RuntimeError as exc:
            raise CorruptImageError(f"cannot decode: {re.sub(r'^.*?[.]cpp:[0-9]+, ', '', str(exc))}") from exc
        if image.ndim == 4:  # an animated GIF: its frames
            if image.shape[0] != 1:
                raise CorruptImageError(f"an animated GIF of {image.shape[0]} frames, not an image (convert it to a video to predict on every frame)")
            image = image[0]
        if image.dtype != torch.uint8:  # 16-bit PNG
            image = F.to_dtype(image, torch.uint8, scale=True)
    if orient:
        image = apply_orientation(image, exif_orientation(raw))
    size = (image.shape[-2], image.shape[-1])
    if expected_size is not None and size != tuple(expected_size):
        raise CorruptImageError(f"decoded size {size[0]}x{size[1]} differs from the annotated {expected_size[0]}x{expected_size[1]}")
    return image


@dataclass
class Annotations:
    """Per-image records as flat arrays (cheap to share with loader workers).

    Image ``i`` owns objects ``offsets[i]:offsets[i + 1]``. Boxes are xyxy in original-image pixels;
    crowd boxes (COCO) are kept for evaluation and left out of training targets.
    """

    paths: list[str]  # image paths relative to the dataset root
    sizes: np.ndarray  # [N, 2] int64 (H, W)
    image_ids: np.ndarray  # [N] int64
    offsets: np.ndarray  # [N + 1] int64
    boxes: np.ndarray  # [O, 4] float32
    labels: np.ndarray  # [O] int64, 1..C-1
    iscrowd: np.ndarray  # [O] bool
    areas: np.ndarray  # [O] float32, area reported for evaluation
    # [O] float32 per name: what the annotation says of each object beyond its box (Cognata's "distance",
    # metres); written into the COCO ground truth for the evaluation report's breakdowns
    attributes: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def from_lists(
        cls,
        paths: Sequence[str],
        sizes: Sequence[tuple[int, int]],
        image_ids: Sequence[int],
        boxes: Sequence[np.ndarray],
        labels: Sequence[np.ndarray],
        iscrowd: Sequence[np.ndarray] | None = None,
        areas: Sequence[np.ndarray] | None = None,
        attributes: dict[str, Sequence[np.ndarray]] | None = None,
    ) -> "Annotations":
        """Build from per-image arrays (``boxes[i]`` is ``[G_i, 4]``); areas default to w * h."""
        counts = [len(b) for b in boxes]
        flat_boxes = _concat(boxes, np.float32).reshape(-1, 4)
        wh = flat_boxes[:, 2:] - flat_boxes[:, :2]
        return cls(
            paths=list(paths),
            sizes=np.asarray(sizes, dtype=np.int64).reshape(-1, 2),
            image_ids=np.asarray(image_ids, dtype=np.int64),
            offsets=np.concatenate(([0], np.cumsum(counts, dtype=np.int64))),
            boxes=flat_boxes,
            labels=_concat(labels, np.int64),
            iscrowd=_concat(iscrowd, bool) if iscrowd is not None else np.zeros(len(flat_boxes), bool),
            areas=_concat(areas, np.float32) if areas is not None else (wh[:, 0] * wh[:, 1]).astype(np.float32),
            attributes={name: _concat(values, np.float32) for name, values in (attributes or {}).items()},
        )

    def __len__(self) -> int:
        return len(self.paths)

    def objects(self, index: int) -> slice:
        """Rows of image ``index`` in the object arrays."""
        return slice(int(self.offsets[index]), int(self.offsets[index + 1]))


def _concat(parts: Sequence[np.ndarray], dtype: Any) -> np.ndarray:
    """Per-image arrays -> one flat array (boxes are reshaped to rows of 4 by the caller)."""
    if not len(parts):
        return np.zeros(0, dtype)
    return np.concatenate([np.asarray(p, dtype).reshape(-1) for p in parts])


class DetectionDataset(Dataset):
    """Images under ``root`` with their annotations; see the module docstring for the item contract.

    Attributes:
        problems: bad input found so far (:class:`ProblemLog`, iterable of :class:`Problem`).
        substitute_unreadable: replace an unreadable image by the next readable one (training);
            False: return the unreadable marker item instead (evaluation sets it).
        filtered: objects and images left out by the dataset's rules (not errors), per reason;
            for Cognata over the whole scanned selection, before the split.
        label_map: the :class:`LabelMap` (checkpoints save ``label_map.to_dict()``).
        category_of_label: label -> ``category_id`` of :meth:`coco_ground_truth` (from the ``gt_category_ids`` argument).
    """

    def __init__(
        self,
        root: Path,
        annotations: Annotations,
        label_map: LabelMap,
        gt_category_ids: Sequence[int],
        transform: Transform | None,
        problems: ProblemLog,
        filtered: Counter[str] | None = None,
    ):
        self.root = Path(root)
        self.annotations = annotations
        self.label_map = label_map
        self._gt_category_ids = tuple(gt_category_ids)
        self.transform = transform if transform is not None else ColorNormalize()  # original size, normalised
        self.problems = problems
        self.filtered = filtered if filtered is not None else Counter()
        self.substitute_unreadable = True
        self._unreadable: set[int] = set()

    # -- label information ------------------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        """Names by label; index 0 is ``"background"``."""
        return list(self.label_map.class_names)

    @property
    def num_classes(self) -> int:
        """Number of labels, background included."""
        return self.label_map.num_classes

    @property
    def category_of_label(self) -> dict[int, int]:
        """Contiguous label -> ``category_id`` of :meth:`coco_ground_truth` (for ``detections_to_coco``)."""
        return dict(enumerate(self._gt_category_ids))

    def objects_in(self, indices: Sequence[int] | None = None) -> int:
        """Ground-truth objects (crowd regions left out) of the images ``indices`` (None: all)."""
        counted = ~self.annotations.iscrowd
        if indices is None:
            return int(counted.sum())
        offsets = self.annotations.offsets
        return int(sum(counted[offsets[i] : offsets[i + 1]].sum() for i in indices))

    def require_ground_truth(self, indices: Sequence[int] | None = None) -> None:
        """Raise :class:`DataError` when the images ``indices`` (None: all) hold no ground-truth
        object: COCO mAP is then undefined (every statistic -1), not a score to report."""
        if self.objects_in(indices) == 0:
            count = len(self) if indices is None else len(indices)
            raise DataError(f"{self.root}: none of the {count} images evaluated has a ground-truth object (after the "
                            "dataset's rules), so their mAP is undefined; evaluate images that have some")

    # -- items ------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.annotations)

    def image_path(self, index: int) -> Path:
        return self.root / self.annotations.paths[index]

    def orig_size(self, index: int) -> tuple[int, int]:
        height, width = self.annotations.sizes[index]
        return int(height), int(width)

    def target_pixels(self, index: int) -> tuple[Tensor, Tensor]:
        """Training boxes ``[G, 4]`` (xyxy, original pixels) and labels ``[G]`` of an image, crowd left out."""
        part = self.annotations.objects(index)
        keep = ~self.annotations.iscrowd[part]
        boxes = torch.from_numpy(self.annotations.boxes[part][keep])
        labels = torch.from_numpy(self.annotations.labels[part][keep])
        return boxes, labels

    def load_image(self, index: int) -> Tensor:
        """Decoded uint8 ``[3, H, W]`` image; raises :class:`CorruptImageError`."""
        return read_image(self.image_path(index), self.orig_size(index))

    def network_input(self, index: int, preprocess: Callable[[Path], tuple[Tensor, tuple[int, int]]]) -> tuple[Tensor, tuple[int, int]]:
        """Image ``index`` as a network takes it, ``preprocess(path)`` (e.g. ``Detector.preprocess``),
        and the size its boxes are reported in; a dataset stored preprocessed returns its own."""
        return preprocess(self.image_path(index))

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor | None, dict[str, Any]]:
        """Item ``key``, or ``(index, seed)``: the item with its random augmentation drawn from ``seed``
        (:class:`ssd.data.loader.AugmentationSampler`), leaving the process's random state as it was."""
        if isinstance(key, tuple):
            index, seed = key
            with torch.random.fork_rng(devices=[]):  # the CPU's generator, the only one the transforms draw from
                torch.random.default_generator.manual_seed(seed)  # torch.manual_seed would reseed CUDA's too, unrestored
                return self[index]
        if get_worker_info() is None:
            return self._item(key)
        try:
            return self._item(key)
        except SSDError as exc:  # raised again by DetectionLoader in the main process
            return None, {"error": exc}

    def _item(self, index: int) -> tuple[Tensor | None, dict[str, Any]]:
        if not self.substitute_unreadable:
            try:
                return self._make_item(index, self.load_image(index))
            except CorruptImageError as exc:
                problem = self._report_unreadable(index, exc)
                return None, {"image_id": int(self.annotations.image_ids[index]), "orig_size": self.orig_size(index), "unreadable": problem}
        found: list[Problem] = []
        count = len(self)
        for step in range(min(MAX_SUBSTITUTES, count)):
            candidate = (index + step) % count
            if candidate in self._unreadable:
                continue
            try:
                image = self.load_image(candidate)
            except CorruptImageError as exc:
                found.append(self._report_unreadable(candidate, exc))
                self._unreadable.add(candidate)
                continue
            image, target = self._make_item(candidate, image)
            if found:
                target["load_problems"] = found
            return image, target
        raise CorruptImageError(f"{self.root}: no readable image among the {min(MAX_SUBSTITUTES, count)} tried from index {index}")

    def _report_unreadable(self, index: int, exc: CorruptImageError) -> Problem:
        """Record image ``index`` as unreadable (raises in strict mode) and return the problem."""
        problem = Problem(str(self.image_path(index)), f"corrupt image: {exc}")
        self.problems.report(problem)
        return problem

    def _make_item(self, index: int, image: Tensor) -> tuple[Tensor, dict[str, Any]]:
        height, width = self.orig_size(index)
        boxes, labels = self.target_pixels(index)
        target = {"boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)), "labels": labels}
        image, target = self.transform(tv_tensors.Image(image), target)
        out_h, out_w = image.shape[-2:]
        scale = torch.tensor([out_w, out_h, out_w, out_h], dtype=torch.float32)
        boxes = (target["boxes"].as_subclass(Tensor).to(torch.float32) / scale).clamp_(0.0, 1.0)
        return image.as_subclass(Tensor), {
            "boxes": boxes,
            "labels": target["labels"].to(torch.int64),
            "image_id": int(self.annotations.image_ids[index]),
            "orig_size": (height, width),
        }

    # -- evaluation -------------------------------------------------------------------------------
    def coco_ground_truth(self) -> dict[str, Any]:
        """The dataset's ground truth as a COCO dict (``images``, ``annotations``, ``categories``).

        Boxes are ``[x, y, w, h]`` in original-image pixels; ``category_id`` is
        ``category_of_label[label]``. Crowd boxes are included
        with ``iscrowd: 1`` so the evaluator ignores detections on them. Each of the annotations'
        ``attributes`` (Cognata's ``distance``) is a key of every annotation.
        """
        ann = self.annotations
        images = [
            {"id": int(image_id), "width": int(w), "height": int(h), "file_name": path}
            for path, image_id, (h, w) in zip(ann.paths, ann.image_ids.tolist(), ann.sizes.tolist())
        ]
        owner = np.repeat(ann.image_ids, np.diff(ann.offsets))
        xywh = np.concatenate([ann.boxes[:, :2], ann.boxes[:, 2:] - ann.boxes[:, :2]], axis=1).astype(np.float64)
        category = np.asarray(self._gt_category_ids, dtype=np.int64)[ann.labels]
        annotations = [
            {"id": k + 1, "image_id": image_id, "category_id": cat, "bbox": box, "area": area, "iscrowd": crowd}
            for k, (image_id, cat, box, area, crowd) in enumerate(
                zip(owner.tolist(), category.tolist(), xywh.tolist(), ann.areas.astype(np.float64).tolist(), ann.iscrowd.astype(int).tolist())
            )
        ]
        for name, values in ann.attributes.items():
            for annotation, value in zip(annotations, values.astype(np.float64).tolist()):
                annotation[name] = value
        categories = [
            {"id": self._gt_category_ids[label], "name": name} for label, name in enumerate(self.class_names) if label > 0
        ]
        return {"images": images, "annotations": annotations, "categories": categories}

    def record_load_problems(self, problems: Sequence[Problem]) -> None:
        """Record problems a loader worker found (already logged there)."""
        for problem in problems:
            self.problems.report(problem, quiet=True)
