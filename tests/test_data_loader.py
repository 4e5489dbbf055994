"""Batches: collate contract, encoding in workers, shuffling per epoch."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssd.anchors import default_boxes
from ssd.data import build_dataset, build_loader, collate
from ssd.data.synth import synth_cognata
from ssd.matching import TargetEncoder


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return synth_cognata(tmp_path_factory.mktemp("cognata"), 24, size=(48, 64), seed=5).root


def first_image_ids(loader) -> list[int]:
    return [t["image_id"] for _, targets, *_ in loader for t in targets]


def test_collate_keeps_per_image_targets(data_root: Path, tiny_config):
    dataset = build_dataset("cognata", data_root, "val", tiny_config)
    images, targets = collate([dataset[0], dataset[1]])
    assert images.shape == (2, 3, 64, 128) and images.dtype == torch.float32
    assert [t["image_id"] for t in targets] == [0, 1]
    assert targets[0]["boxes"].shape[1] == 4


def test_encoding_in_workers_matches_encoding_after_collate(data_root: Path, tiny_config):
    dataset = build_dataset("cognata", data_root, "val", tiny_config)
    encoder = TargetEncoder(default_boxes(tiny_config))
    loader = build_loader(dataset, 4, train=False, num_workers=2, target_encoder=encoder)
    images, targets, offsets, anchor_labels = next(iter(loader))
    assert offsets.shape == (4, encoder.num_anchors, 4) and anchor_labels.shape == (4, encoder.num_anchors)
    want_offsets, want_labels = encoder.encode_batch([t["boxes"] for t in targets], [t["labels"] for t in targets])
    torch.testing.assert_close(offsets, want_offsets)
    assert torch.equal(anchor_labels, want_labels) and (anchor_labels > 0).any()


def test_training_order_changes_with_the_epoch_and_repeats_for_the_same_epoch(data_root: Path, tiny_config):
    dataset = build_dataset("cognata", data_root, "all", tiny_config, train=True)
    loader = build_loader(dataset, 3, train=True, num_workers=0, seed=7)
    loader.set_epoch(0)
    epoch0 = first_image_ids(loader)
    loader.set_epoch(1)
    epoch1 = first_image_ids(loader)
    loader.set_epoch(0)
    assert first_image_ids(loader) == epoch0 != epoch1
    assert len(set(epoch0)) == len(epoch1) == len(dataset) // 3 * 3  # last partial batch dropped
    assert first_image_ids(loader) != epoch0  # without set_epoch the next pass still reshuffles


def test_evaluation_order_is_the_dataset_order(data_root: Path, tiny_config):
    dataset = build_dataset("cognata", data_root, "val", tiny_config)
    loader = build_loader(dataset, 2, train=False, num_workers=0)
    assert first_image_ids(loader) == list(range(len(dataset)))
