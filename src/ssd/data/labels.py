"""Label maps: dataset class ids <-> contiguous training labels (0 = background) and class names.

Cognata uses the fixed 15-class map of the MLPerf configs and the official checkpoint by default;
the reference's other mode numbers classes in the order they first appear in the files, which
depends on the files, so such a map must travel with the checkpoint (:meth:`LabelMap.to_dict` /
:meth:`LabelMap.from_dict`). COCO maps its 80 sparse category ids (1..90) to 1..80.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ssd.data.problems import DataError

BACKGROUND = "background"
COCO_NUM_CLASSES = 81  # 80 categories and the background

# Cognata class id -> name, in label order (label = position); MLPerf configs and official checkpoint
COGNATA_CLASSES: tuple[tuple[int, str], ...] = (
    (0, BACKGROUND),
    (28, "Traffic_light"),
    (29, "Props"),
    (33, "TrafficSign"),
    (8, "Car"),
    (36, "Van"),
    (13, "Rider"),
    (11, "Motorcycle"),
    (35, "Bicycle"),
    (14, "Pedestrian"),
    (9, "Truck"),
    (48, "PersonalMobility"),
    (10, "Bus"),
    (46, "Trailer"),
    (44, "Animal"),
)


@dataclass(frozen=True)
class LabelMap:
    """Contiguous labels 0..C-1 with the dataset class id and name of each (label 0: background).

    ``category_ids[label]`` is the dataset's id of a label; :attr:`label_of_category` the inverse.
    Datasets hold one as ``dataset.label_map``; checkpoints save :meth:`to_dict` under ``"label_map"``.
    """

    category_ids: tuple[int, ...]
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.category_ids) != len(self.class_names) or not self.category_ids:
            raise DataError("label map: category ids and class names must be non-empty and of the same length")
        if len(set(self.category_ids)) != len(self.category_ids):
            raise DataError(f"label map: duplicate category ids in {list(self.category_ids)}")

    @property
    def num_classes(self) -> int:
        """Number of labels, background included."""
        return len(self.category_ids)

    @property
    def label_of_category(self) -> dict[int, int]:
        """Dataset class id -> contiguous label (background included, as the reference stores it)."""
        return {cid: label for label, cid in enumerate(self.category_ids)}

    def labels_of(self, class_ids: np.ndarray) -> np.ndarray:
        """Dataset class ids ``[K]`` -> labels ``[K]`` (int64), ``-1`` for ids not in the map."""
        ids = np.asarray(class_ids, dtype=np.int64)
        order = np.argsort(self.category_ids)
        known = np.asarray(self.category_ids, dtype=np.int64)[order]
        pos = np.minimum(np.searchsorted(known, ids), len(known) - 1)
        return np.where(known[pos] == ids, order[pos], -1).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """Plain data for a checkpoint: ``{"category_ids": [...], "class_names": [...]}``."""
        return {"category_ids": list(self.category_ids), "class_names": list(self.class_names)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LabelMap":
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(tuple(int(c) for c in data["category_ids"]), tuple(str(n) for n in data["class_names"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"label map: expected category_ids and class_names lists, got {data!r}") from exc


def cognata_fixed() -> LabelMap:
    """The fixed 15-class Cognata map of the MLPerf configs (:data:`COGNATA_CLASSES`)."""
    return LabelMap(tuple(c for c, _ in COGNATA_CLASSES), tuple(n for _, n in COGNATA_CLASSES))


def first_appearance(class_ids: Iterable[int], names: Mapping[int, str]) -> LabelMap:
    """Labels numbered in the order the ids first appear (the reference's ``use_label_info: false``)."""
    order = list(dict.fromkeys(int(c) for c in class_ids if int(c) != 0))
    return LabelMap((0, *order), (BACKGROUND, *(names.get(c, str(c)) for c in order)))


def from_coco_categories(categories: Iterable[Mapping[str, Any]]) -> LabelMap:
    """COCO ``categories`` entries -> labels 1..C-1 in ascending category id order."""
    entries = sorted((int(c["id"]), str(c.get("name", c["id"]))) for c in categories)
    return LabelMap((0, *(i for i, _ in entries)), (BACKGROUND, *(n for _, n in entries)))


def coco_class_names() -> tuple[str, ...]:
    """``background`` and COCO's 80 category names in category-id order (labels 0..80)."""
    from torchvision.models.detection import SSD300_VGG16_Weights

    names = SSD300_VGG16_Weights.COCO_V1.meta["categories"]  # 91 ids with N/A gaps, __background__ first
    return (BACKGROUND, *(name for name in names[1:] if name != "N/A"))


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """Names for a model without saved names: COCO's for 81 classes, Cognata's map for 15, else numbers."""
    if num_classes == COCO_NUM_CLASSES:
        return coco_class_names()
    cognata = cognata_fixed()
    if num_classes == cognata.num_classes:
        return cognata.class_names
    return (BACKGROUND, *(str(label) for label in range(1, num_classes)))


def class_names_for(checkpoint: Mapping[str, Any], num_classes: int) -> tuple[str, ...]:
    """The checkpoint's ``class_names`` when it has them for ``num_classes``, else :func:`default_class_names`."""
    names = checkpoint.get("class_names")
    if isinstance(names, (list, tuple)) and len(names) == num_classes:
        return tuple(str(name) for name in names)
    return default_class_names(num_classes)
