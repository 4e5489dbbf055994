import pytest
import torch

from ssd.config import load_config
from ssd.models import build_model
from ssd.models.backbone_weights import BackboneWeightsError


def _feature_shapes(model, image_size):
    """Run on the meta device and record every prediction map's size through the heads."""
    sizes = []
    hooks = [head.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:]))) for head in model.loc]
    with torch.no_grad():
        locs, confs = model(torch.empty(1, 3, *image_size, device="meta"))
    for hook in hooks:
        hook.remove()
    return sizes, locs.shape, confs.shape


@pytest.mark.parametrize(
    "name, num_classes, parameters",
    [("test_8MP", 10, 14_059_236), ("baseline_8MP_ss_scales_fm1_5x5_all", 15, 27_402_950)],
)
def test_seed_and_official_parameter_counts(name, num_classes, parameters):
    with torch.device("meta"):
        model = build_model(load_config(name), num_classes)
    assert sum(p.numel() for p in model.parameters()) == parameters


@pytest.mark.parametrize(
    "name", ["coco_300x300", "test_8MP", "baseline_8MP_ss_scales_all", "baseline_8MP_ss_scales_fm1_5x5_all",
             "baseline_4MP_ss_all", "ssdlite_coco_300x300"],
)
def test_derived_sizes_equal_the_real_layers(name):
    config = load_config(name)
    with torch.device("meta"):
        model = build_model(config, 15).eval()
    sizes, locs_shape, confs_shape = _feature_shapes(model, config.model.image_size)
    assert tuple(sizes) == config.model.feature_sizes
    assert locs_shape == (1, 4, config.model.num_anchors) and confs_shape == (1, 15, config.model.num_anchors)


def test_reference_state_dict_layout():
    with torch.device("meta"):
        keys = build_model(load_config("baseline_8MP_ss_scales_fm1_5x5_all"), 15).state_dict().keys()
    prefixes = {".".join(k.split(".")[:3]) for k in keys if k.startswith("feature_extractor")}
    assert prefixes == {f"feature_extractor.feature_extractor.{i}" for i in (0, 1, 4, 5, 6)}
    assert "feature_extractor.feature_extractor.6.0.downsample.0.weight" in keys
    assert {k.split(".")[2] for k in keys if k.startswith("additional_blocks.")} == {"0", "1", "3", "4"}
    assert "additional_blocks.5.0.weight" in keys and "additional_blocks.6.0.weight" not in keys
    assert "loc.6.weight" in keys and "conf.6.bias" in keys


def test_mlperf_shapes_follow_the_width_quirk():
    with torch.device("meta"):
        state = build_model(load_config("baseline_8MP_ss_scales_fm1_5x5_all"), 15).state_dict()
    assert state["additional_blocks.0.0.weight"].shape == (1024, 1024, 1, 1)
    assert state["additional_blocks.5.3.weight"].shape == (256, 256, 3, 3)
    assert state["conf.6.weight"].shape == (4 * 15, 256, 5, 5)


def test_backbone_stride_edit_applied():
    model = build_model(load_config("coco_300x300"), 3)
    block = model.feature_extractor.feature_extractor[6][0]
    assert block.conv2.stride == (1, 1) and block.downsample[0].stride == (1, 1)
    assert model.feature_extractor.feature_extractor[5][0].conv2.stride == (2, 2)


def test_tiny_forward_real_tensors(tiny_config):
    model = build_model(tiny_config, 4).eval()
    with torch.no_grad():
        locs, confs = model(torch.randn(2, 3, 64, 128))
    assert locs.shape == (2, 4, 448) and confs.shape == (2, 4, 448)
    assert torch.isfinite(locs).all()


def test_ssdlite_forward_and_backward():
    config = load_config("ssdlite_coco_300x300")
    model = build_model(config, 5)
    locs, confs = model(torch.randn(2, 3, 300, 300))
    assert locs.shape == (2, 4, 3000) and confs.shape == (2, 5, 3000)
    (locs.mean() + confs.mean()).backward()
    assert model.feature_extractor.feature_extractor[0][0].weight.grad is not None


def test_channels_last_gives_same_outputs(tiny_config):
    model = build_model(tiny_config, 3).eval()
    x = torch.randn(1, 3, 64, 128)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        got = model(x.to(memory_format=torch.channels_last))
    assert torch.allclose(got[0], expected[0], rtol=1e-4, atol=1e-3)
    assert torch.allclose(got[1], expected[1], rtol=1e-4, atol=1e-3)


def test_backbone_weights_from_local_file(tmp_path, tiny_config):
    from torchvision.models import resnet50

    reference = resnet50(weights=None)
    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("fc.")}
    path = tmp_path / "resnet50.pth"
    torch.save(state, path)
    model = build_model(tiny_config, 3, backbone_weights=path)
    assert torch.equal(model.feature_extractor.feature_extractor[0].weight, reference.conv1.weight)
    with pytest.raises(BackboneWeightsError, match="not found"):
        build_model(tiny_config, 3, backbone_weights=tmp_path / "missing.pth")
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(BackboneWeightsError, match="missing"):
        build_model(tiny_config, 3, backbone_weights=tmp_path / "other.pth")


def test_imagenet_weights_never_download(tmp_path, monkeypatch, tiny_config):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(BackboneWeightsError, match="nothing is downloaded"):
        build_model(tiny_config, 3, backbone_weights="imagenet")
