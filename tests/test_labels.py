"""Label maps: contiguous labels for dataset class ids, in the order each dataset's rule gives."""
from __future__ import annotations

import numpy as np
import pytest

from ssd.data.labels import (
    LabelMap, class_names_for, cognata_fixed, default_class_names, first_appearance, from_coco_categories,
)
from ssd.data.problems import DataError


def test_labels_of_maps_ids_in_any_order_and_unknown_ids_below_between_and_above_to_minus_one():
    labels = LabelMap((0, 30, 7, 12), ("background", "c30", "c7", "c12"))
    ids = np.array([7, 12, 30, 0, -5, 6, 8, 13, 29, 31, 1000])
    assert labels.labels_of(ids).tolist() == [2, 3, 1, 0, -1, -1, -1, -1, -1, -1, -1]
    assert labels.labels_of(np.array([], dtype=np.int64)).tolist() == []
    assert labels.labels_of(ids).dtype == np.int64 and labels.labels_of([30, 7]).tolist() == [1, 2]
    assert labels.num_classes == 4 and labels.label_of_category == {0: 0, 30: 1, 7: 2, 12: 3}


def test_first_appearance_numbers_ids_as_they_come_background_first():
    labels = first_appearance([5, 0, 1, 5, 9, 1], {5: "five", 1: "one"})
    assert labels.category_ids == (0, 5, 1, 9)
    assert labels.class_names == ("background", "five", "one", "9")  # an id without a name is named by its number


def test_coco_categories_sorted_by_id_and_unnamed_ones_named_by_id():
    labels = from_coco_categories([{"id": 13, "name": "stop sign"}, {"id": 1, "name": "person"}, {"id": 4}])
    assert labels.category_ids == (0, 1, 4, 13) and labels.class_names == ("background", "person", "4", "stop sign")


def test_dict_round_trip_and_malformed_or_inconsistent_maps_are_errors():
    labels = cognata_fixed()
    assert LabelMap.from_dict(labels.to_dict()) == labels
    assert labels.to_dict()["category_ids"] == [0, 28, 29, 33, 8, 36, 13, 11, 35, 14, 9, 48, 10, 46, 44]
    with pytest.raises(DataError, match=r"^label map: expected category_ids and class_names lists, got \{'category_ids': \[0\]\}$"):
        LabelMap.from_dict({"category_ids": [0]})
    with pytest.raises(DataError, match="^label map: category ids and class names must be non-empty and of the same length$"):
        LabelMap((0, 1), ("background",))
    with pytest.raises(DataError, match="non-empty"):
        LabelMap((), ())
    with pytest.raises(DataError, match=r"duplicate category ids in \[0, 3, 3\]"):
        LabelMap((0, 3, 3), ("background", "a", "b"))


def test_names_of_a_model_come_from_its_checkpoint_else_from_its_class_count():
    assert default_class_names(81)[:3] == ("background", "person", "bicycle") and default_class_names(81)[-1] == "toothbrush"
    assert len(default_class_names(81)) == 81
    assert default_class_names(15) == cognata_fixed().class_names
    assert default_class_names(4) == ("background", "1", "2", "3")
    assert class_names_for({"class_names": ["bg", "a", "b"]}, 3) == ("bg", "a", "b")
    assert class_names_for({"class_names": ["bg", "a"]}, 3) == ("background", "1", "2")  # names of another model
    assert class_names_for({}, 3) == ("background", "1", "2")
