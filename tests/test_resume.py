"""Which checkpoint a run resumes from (ssd.engine.resume); two torchrun nodes in test_train_runs.py."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssd.checkpoint import CheckpointError, atomic_save
from ssd.distributed import DistributedContext
from ssd.engine.resume import find_resume_point, local_resume_path, newest_rank

ALONE = DistributedContext(rank=0, local_rank=0, world_size=1, device=torch.device("cpu"))


@pytest.mark.parametrize(("epochs", "rank"), [
    ([None, None], None),
    ([0, 1], 1),  # the newest wins over rank 0's
    ([1, 0], 0),
    ([1, 1], 0),  # a tie: the lowest rank
    ([None, 3, 3], 1),
    ([2, None], 0),
    ([-1, None], 0),  # a checkpoint without an epoch still counts
])
def test_newest_rank(epochs, rank):
    assert newest_rank(epochs) == rank


def test_local_resume_path_prefers_the_explicit_file(tmp_path):
    assert local_resume_path(None, tmp_path) is None
    (tmp_path / "last.pth").write_bytes(b"x")
    assert local_resume_path(None, tmp_path) == tmp_path / "last.pth"
    other = tmp_path / "other.pth"
    assert local_resume_path(other, tmp_path) is None  # not the save folder's last.pth instead
    other.write_bytes(b"x")
    assert local_resume_path(other, tmp_path) == other


def test_one_process_resumes_from_its_last_checkpoint(tmp_path):
    assert find_resume_point(None, tmp_path, ALONE) is None
    atomic_save({"epoch": 4, "weights": torch.arange(3.0)}, tmp_path / "last.pth")
    point = find_resume_point(None, tmp_path, ALONE)
    assert point.path == tmp_path / "last.pth" and point.rank == 0 and point.checkpoint["epoch"] == 4
    assert torch.equal(point.checkpoint["weights"], torch.arange(3.0))


def test_a_missing_explicit_resume_is_an_error_naming_it(tmp_path):
    atomic_save({"epoch": 4}, tmp_path / "last.pth")  # not taken instead
    with pytest.raises(CheckpointError, match=r"resume: checkpoint not found: .*gone\.pth"):
        find_resume_point(Path(tmp_path / "gone.pth"), tmp_path, ALONE)


def test_an_unreadable_checkpoint_is_an_error_naming_the_file(tmp_path):
    (tmp_path / "last.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=r"last\.pth: cannot read checkpoint"):
        find_resume_point(None, tmp_path, ALONE)


def _rank_outcome(rank: int, port: int, folders: list[Path], results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    context = DistributedContext(rank=rank, local_rank=0, world_size=2, device=torch.device("cpu"))
    try:
        point = find_resume_point(None, folders[rank], context)
        results.put((rank, "ok", point.rank, str(point.path), point.checkpoint["epoch"], point.checkpoint["weights"].tolist()))
    except CheckpointError as exc:
        results.put((rank, "error", str(exc)))
    finally:
        dist.destroy_process_group()


def _two_ranks(folders: list[Path]) -> dict[int, tuple]:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [context.Process(target=_rank_outcome, args=(rank, port, folders, results)) for rank in (0, 1)]
    for process in processes:
        process.start()
    outcomes = dict((outcome[0], outcome[1:]) for outcome in (results.get(timeout=120) for _ in processes))
    for process in processes:
        process.join(timeout=60)
    return outcomes


def test_ranks_resume_from_the_newest_checkpoint_any_of_them_has_or_all_refuse(tmp_path):
    folders = [tmp_path / "node0", tmp_path / "node1"]
    for folder in folders:
        folder.mkdir()
    atomic_save({"epoch": 2, "weights": torch.tensor([2.0])}, folders[0] / "last.pth")  # stale
    atomic_save({"epoch": 5, "weights": torch.tensor([5.0])}, folders[1] / "last.pth")
    outcomes = _two_ranks(folders)
    expected = ("ok", 1, str(folders[1] / "last.pth"), 5, [5.0])
    assert outcomes == {0: expected, 1: expected}

    (folders[1] / "last.pth").write_bytes(b"truncated")
    outcomes = _two_ranks(folders)
    assert {rank: outcome[0] for rank, outcome in outcomes.items()} == {0: "error", 1: "error"}
    assert outcomes[0] == outcomes[1] and outcomes[0][1].startswith("rank 1: ") and "node1" in outcomes[0][1]
