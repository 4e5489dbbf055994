import pytest
import torch

from ssd.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from ssd.models import build_model


@pytest.fixture
def trained(tiny_config):
    torch.manual_seed(0)
    model = build_model(tiny_config, 4).eval()
    for module in model.modules():  # non-trivial BN statistics so buffers matter
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
    return model


@pytest.mark.parametrize("layout", ["reference", "ours", "bare", "ddp"])
def test_checkpoint_layouts_load_and_give_same_outputs(tmp_path, tiny_config, trained, layout):
    state = trained.state_dict()
    wrapped = {
        "reference": {"epoch": 3, "model_state_dict": state, "optimizer": {}, "scheduler": {}},
        "ours": {"model": state, "epoch": 3},
        "bare": state,
        "ddp": {"model_state_dict": {f"module.{k}": v for k, v in state.items()}},
    }[layout]
    path = tmp_path / "ckpt.pth"
    torch.save(wrapped, path)
    fresh = build_model(tiny_config, 4).eval()
    load_checkpoint(fresh, path)
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        assert torch.equal(fresh(x)[1], trained(x)[1])


def test_wrong_number_of_classes_names_key_and_shapes(tmp_path, tiny_config, trained):
    path = tmp_path / "ckpt.pth"
    torch.save({"model_state_dict": trained.state_dict()}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(build_model(tiny_config, 7), path)
    message = str(err.value)
    assert "'conf.0.weight'" in message and "(12, 1024, 3, 3)" in message and "(21, 1024, 3, 3)" in message


def test_other_config_reports_missing_or_unexpected_key(tmp_path, tiny_config, trained):
    state = trained.state_dict()
    state["additional_blocks.9.0.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="unexpected key 'additional_blocks.9.0.weight'"):
        load_checkpoint(build_model(tiny_config, 4), tmp_path / "extra.pth")
    del state["additional_blocks.9.0.weight"], state["loc.1.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="missing key 'loc.1.bias'"):
        load_checkpoint(build_model(tiny_config, 4), tmp_path / "missing.pth")


def test_unreadable_checkpoint(tmp_path, tiny_config):
    path = tmp_path / "corrupt.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.pth: cannot read checkpoint"):
        load_checkpoint(build_model(tiny_config, 4), path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(build_model(tiny_config, 4), tmp_path / "absent.pth")


class CodeExecuting:
    def __reduce__(self):
        return (eval, ("1",))


@pytest.mark.parametrize(
    ("content", "cause"),
    [
        ("garbage", "Unsupported operand 103"),
        ("code", "Unsupported global: GLOBAL eval was not an allowed global by default."),
        ("truncated", "PytorchStreamReader failed reading zip archive: failed finding central directory."),
    ],
)
def test_an_unreadable_checkpoint_is_one_sentence_naming_the_cause(tmp_path, content, cause):
    """torch.load's message is paragraphs of advice, one of which is to load untrusted files unsafely."""
    path = tmp_path / "bad.pth"
    if content == "garbage":
        path.write_bytes(b"garbage")
    elif content == "code":
        torch.save({"x": CodeExecuting()}, path)
    else:
        torch.save({"weights": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError) as raised:
        read_checkpoint(path)
    assert str(raised.value) == f"{path}: cannot read checkpoint: {cause}"
