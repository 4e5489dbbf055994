"""Batches: collate contract, workers, shuffling and augmentation seeds per epoch."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch.utils.data import DistributedSampler

from ssd.data import build_dataset, build_loader, collate
from ssd.data.loader import AugmentationSampler, item_seed
from ssd.data.synth import synth_cognata


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


def test_batches_from_worker_processes_equal_those_loaded_in_process(data_root: Path, tiny_config):
    dataset = build_dataset("cognata", data_root, "val", tiny_config)
    images, targets = next(iter(build_loader(dataset, 4, train=False, num_workers=2)))
    want_images, want_targets = next(iter(build_loader(dataset, 4, train=False, num_workers=0)))
    assert torch.equal(images, want_images)
    assert [t["image_id"] for t in targets] == [t["image_id"] for t in want_targets]
    assert all(torch.equal(t["boxes"], w["boxes"]) and torch.equal(t["labels"], w["labels"]) for t, w in zip(targets, want_targets))


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


def test_training_augmentation_depends_on_the_seed_the_epoch_and_the_index_only(data_root: Path, tiny_config):
    dataset = build_dataset("cognata", data_root, "all", tiny_config, train=True)

    def epoch_images(workers: int, epoch: int) -> dict[int, torch.Tensor]:
        loader = build_loader(dataset, 3, train=True, num_workers=workers, seed=7)
        loader.set_epoch(epoch)
        return {t["image_id"]: images[i] for images, targets in loader for i, t in enumerate(targets)}

    in_process, in_workers, next_epoch = epoch_images(0, 1), epoch_images(2, 1), epoch_images(0, 2)
    assert in_process.keys() == in_workers.keys() and all(torch.equal(in_process[k], in_workers[k]) for k in in_process)
    shared = in_process.keys() & next_epoch.keys()
    assert shared and any(not torch.equal(in_process[k], next_epoch[k]) for k in shared)  # new draws each epoch


def test_ranks_draw_their_augmentation_from_different_seeds(data_root: Path, tiny_config):
    dataset = build_dataset("cognata", data_root, "all", tiny_config, train=True)
    keys = []
    for rank in (0, 1):
        sampler = AugmentationSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=7)
        sampler.set_epoch(3)
        keys.append(list(sampler))
    plain = DistributedSampler(dataset, num_replicas=2, rank=0, shuffle=True, seed=7)
    plain.set_epoch(3)
    assert [index for index, _ in keys[0]] == list(plain)  # the shuffle is the sampler's, shared by the ranks
    # only an index both ranks load (the sampler pads the shorter rank by repeating one) shares a seed
    padded = {index for index, _ in keys[0]} & {index for index, _ in keys[1]}
    assert len(padded) <= len(dataset) % 2
    assert {seed for _, seed in keys[0]} & {seed for _, seed in keys[1]} == {item_seed(7, 3, index) for index in padded}
    assert keys[0][0][1] == item_seed(7, 3, keys[0][0][0])


def test_item_seeds_by_hand():
    # (7 x 1,000,003) XOR 3 = 7,000,021 XOR 3 = 7,000,022; x 1,000,003 = 7,000,043,000,066; XOR the index
    assert item_seed(7, 3, 0) == 7_000_043_000_066
    assert item_seed(7, 3, 5) == 7_000_043_000_071
    assert item_seed(7, 4, 5) == 7_000_038_000_054  # 7,000,021 XOR 4 = 7,000,017
    assert item_seed(2**63 + 7, 3, 5) == item_seed(7, 3, 5) < 2**63  # seeds are kept to 63 bits


def test_a_seeded_item_draws_from_the_cpu_generator_alone_and_leaves_every_state_as_it_was(data_root: Path, tiny_config, monkeypatch):
    """The process's generators are untouched by an augmented item: CPU's restored, CUDA's never seeded
    (torch.manual_seed would reseed it, in the training process itself when the loader has no workers)."""
    dataset = build_dataset("cognata", data_root, "all", tiny_config, train=True)

    def refuse(*args):
        raise AssertionError("an item seeded a generator other than the CPU's")

    monkeypatch.setattr(torch.cuda, "manual_seed_all", refuse)
    monkeypatch.setattr(torch.cuda, "manual_seed", refuse)
    before = torch.random.get_rng_state()
    first, again = dataset[(3, 11)], dataset[(3, 11)]
    assert torch.equal(torch.random.get_rng_state(), before)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1]["boxes"], again[1]["boxes"])
