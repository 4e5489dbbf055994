from types import SimpleNamespace

import pytest
import torch

from ssd import architectures
from ssd.architectures import Architecture, get_architecture, register_architecture
from ssd.checkpoint import (
    CheckpointError, check_config_matches, check_dataset_fits, config_record, extract_state_dict, load_checkpoint, load_model,
    num_classes_of, read_checkpoint, recorded_other_config,
)
from ssd.config import load_config
from ssd.data.labels import LabelMap, cognata_fixed
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


# -- key handling and metadata: each rule at its edge ------------------------------------------------
def test_state_dict_is_found_under_either_key_else_the_dict_itself_and_only_a_leading_module_prefix_goes():
    weights = {"module.conf.0.bias": torch.zeros(1), "conf.module.bias": torch.ones(1)}
    expected = {"conf.0.bias": weights["module.conf.0.bias"], "conf.module.bias": weights["conf.module.bias"]}
    for checkpoint in ({"model_state_dict": weights, "epoch": 1}, {"model": weights}, weights):
        assert extract_state_dict(checkpoint) == expected
    # a "model" entry that is not a dict (e.g. an architecture name) does not hide the state dict
    assert extract_state_dict({"model": "ssd", "model_state_dict": weights}) == expected


def _conf_state(*bias_channels: int) -> dict[str, torch.Tensor]:
    return {f"conf.0.{k}.bias": torch.zeros(c) for k, c in enumerate(bias_channels)} | {"loc.0.bias": torch.zeros(12)}


def test_number_of_classes_is_requested_else_recorded_else_read_off_the_first_conf_head(tiny_config):
    per_location = tiny_config.model.head.num_defaults[0]
    assert per_location == 3
    state = _conf_state(1024, 4 * per_location)  # SSDLite-like: a depthwise bias, then the output's
    assert num_classes_of({}, state, tiny_config, None, "c.pth") == 4  # the last conf.0 bias counts
    assert num_classes_of({"num_classes": 9}, state, tiny_config, None, "c.pth") == 9
    assert num_classes_of({}, state, tiny_config, 6, "c.pth") == 6
    assert num_classes_of({"num_classes": 6}, state, tiny_config, 6, "c.pth") == 6
    with pytest.raises(CheckpointError, match="^c.pth: trained for 9 classes, num_classes says 6$"):
        num_classes_of({"num_classes": 9}, state, tiny_config, 6, "c.pth")
    assert num_classes_of({}, _conf_state(2 * per_location), tiny_config, None, "c.pth") == 2  # background + one class
    for channels in (per_location, 2 * per_location + 1):  # one class only (background), or not a multiple
        with pytest.raises(CheckpointError, match=f"first conf head has {channels} outputs, not a multiple of the 3 default boxes of config 'tiny'"):
            num_classes_of({}, _conf_state(channels), tiny_config, None, "c.pth")
    with pytest.raises(CheckpointError, match="no conf.0 head"):
        num_classes_of({}, {"conf.1.bias": torch.zeros(12)}, tiny_config, None, "c.pth")


def test_a_recorded_config_must_be_the_one_given_by_name_or_text(tiny_config, tmp_path):
    same_text = tmp_path / "renamed.yaml"
    same_text.write_text(tiny_config.source.read_text())
    other_text = tmp_path / "other.yaml"
    other_text.write_text(tiny_config.source.read_text() + "\n# edited\n")
    record = {"config": config_record(tiny_config)}
    assert recorded_other_config({}, tiny_config) is None  # the reference's checkpoints record nothing
    assert recorded_other_config(record, tiny_config) is None
    assert recorded_other_config(record, load_config(same_text)) is None  # same text under another name
    assert recorded_other_config(record, load_config(other_text)) == "tiny"
    with pytest.raises(CheckpointError, match=r"^c.pth: trained with config 'tiny', not 'other' \(same tensor shapes"):
        check_config_matches(record, load_config(other_text), "c.pth")
    check_config_matches(record, load_config(same_text), "c.pth")


def test_load_model_gives_the_weights_in_eval_mode_and_refuses_another_config_unless_allowed(tiny_config, trained, tmp_path, caplog):
    path = tmp_path / "c.pth"
    torch.save({"model_state_dict": trained.state_dict(), "num_classes": 4, "config": config_record(tiny_config)}, path)
    model, checkpoint = load_model(path, tiny_config)
    assert not model.training and checkpoint["num_classes"] == 4
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in model.state_dict().items())
    other = tmp_path / "other.yaml"
    other.write_text(tiny_config.source.read_text() + "\n# edited\n")
    with pytest.raises(CheckpointError, match="trained with config 'tiny', not 'other'"):
        load_model(path, other)
    with caplog.at_level("WARNING"):
        allowed, _ = load_model(path, other, allow_other_config=True)
    assert "trained with config 'tiny', used here with 'other' (allow_other_config)" in caplog.text
    assert all(torch.equal(v, trained.state_dict()[k]) for k, v in allowed.state_dict().items())


@pytest.mark.parametrize("config_name", ["tiny", "demo_ssdlite_160"])
def test_load_model_initialises_nothing_at_random_and_sets_every_value(config_name, tiny_config, tmp_path):
    """The network is built without random initialisation (the global random state is untouched), and every
    parameter and buffer is the checkpoint's."""
    config = tiny_config if config_name == "tiny" else load_config(config_name)
    torch.manual_seed(1)
    saved = build_model(config, 4).eval()
    for module in saved.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 2.0)
            module.num_batches_tracked.fill_(7)
    path = tmp_path / "c.pth"
    torch.save({"model_state_dict": saved.state_dict()}, path)
    before = torch.get_rng_state()
    model, _ = load_model(path, config, 4)
    assert torch.equal(torch.get_rng_state(), before)
    assert model.state_dict().keys() == saved.state_dict().keys()
    assert all(torch.equal(value, saved.state_dict()[key]) for key, value in model.state_dict().items())


def test_a_network_with_state_outside_its_state_dict_is_loaded_initialised(tiny_config, tmp_path):
    """A non-persistent buffer is no state-dict entry, so no load sets it: such a network is built initialised."""
    ssd = get_architecture("ssd")

    def with_buffer(model_config, num_classes, backbone_weights=None):
        model = ssd.build(model_config, num_classes, backbone_weights)
        model.register_buffer("scale", torch.full((3,), 2.5), persistent=False)
        return model

    register_architecture(Architecture("ssd_buffer", read_config=ssd.read_config, build=with_buffer))
    try:
        config_path = tmp_path / "buffer.yaml"
        config_path.write_text(tiny_config.source.read_text().replace("model:\n", "model:\n  arch: ssd_buffer\n", 1))
        config = load_config(config_path)
        saved = build_model(config, 4)
        torch.save({"model_state_dict": saved.state_dict()}, tmp_path / "c.pth")
        model, _ = load_model(tmp_path / "c.pth", config, 4)
    finally:
        architectures._registered.pop("ssd_buffer")
    assert torch.equal(model.scale, torch.full((3,), 2.5))
    assert all(torch.equal(value, saved.state_dict()[key]) for key, value in model.state_dict().items())


def test_a_dataset_fits_a_model_with_its_number_of_classes_and_label_map():
    labels = cognata_fixed()
    dataset = SimpleNamespace(num_classes=labels.num_classes, label_map=labels, class_names=labels.class_names)
    check_dataset_fits({"label_map": labels.to_dict()}, labels.num_classes, dataset, "c.pth")
    check_dataset_fits({}, labels.num_classes, dataset, "c.pth")  # the reference's checkpoints: the count only
    with pytest.raises(CheckpointError, match="^c.pth: the model has 14 classes, the dataset 15$"):
        check_dataset_fits({}, labels.num_classes - 1, dataset, "c.pth")
    shuffled = LabelMap(labels.category_ids[:1] + labels.category_ids[:0:-1], labels.class_names[:1] + labels.class_names[:0:-1])
    with pytest.raises(CheckpointError, match="label map differs"):
        check_dataset_fits({"label_map": shuffled.to_dict()}, labels.num_classes, dataset, "c.pth")


def test_a_value_that_is_not_a_tensor_is_named_with_its_type_and_the_full_message(tmp_path, tiny_config, trained):
    state = trained.state_dict()
    state["loc.0.bias"] = 3
    torch.save(state, tmp_path / "odd.pth")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(build_model(tiny_config, 4), tmp_path / "odd.pth")
    assert str(err.value) == (
        f"{tmp_path / 'odd.pth'}: 'loc.0.bias' has shape int in the checkpoint but (12,) in the model "
        "(another config or number of classes?)"
    )


def test_a_number_of_classes_read_off_the_weights_is_an_integer(tiny_config):
    classes = num_classes_of({}, _conf_state(12), tiny_config, None, "c.pth")
    assert type(classes) is int and classes == 4


@pytest.mark.hostile("config mid-run")
def test_a_run_records_the_config_as_it_was_loaded(tiny_config):
    """The file may be edited or removed while a run goes on: the record is the text the run loaded."""
    loaded = tiny_config.source.read_text()
    tiny_config.source.write_text(loaded.replace("[16, 32, 64]", "[12, 32, 64]"))
    assert config_record(tiny_config)["text"] == loaded
    tiny_config.source.unlink()
    assert config_record(tiny_config) == {"name": "tiny", "source": str(tiny_config.source), "text": loaded}


@pytest.mark.hostile("config mid-run")
def test_the_same_name_with_another_model_section_is_another_config(tiny_config):
    record = {"config": config_record(tiny_config)}
    path = tiny_config.source
    path.write_text(tiny_config.text + "\n# a comment changes nothing the weights depend on\n")
    assert recorded_other_config(record, load_config(path)) is None
    path.write_text(tiny_config.text.replace("[16, 32, 64]", "[12, 32, 64]"))  # other anchor scales: same shapes, other boxes
    with pytest.raises(CheckpointError, match=r"trained with config 'tiny \(as recorded: the model section of the file has changed since\)', not 'tiny'"):
        check_config_matches(record, load_config(path), "c.pth")


@pytest.mark.hostile("config mid-run")
def test_a_recorded_python_config_is_never_run(tiny_config, tmp_path):
    """A checkpoint is not trusted code: a recorded .py config is compared by name, not executed."""
    marker = tmp_path / "ran"
    record = {"config": {"name": "tiny", "source": str(tmp_path / "tiny.py"), "text": f"import pathlib; pathlib.Path({str(marker)!r}).touch()"}}
    assert recorded_other_config(record, tiny_config) is None and not marker.exists()
