from pathlib import Path

import pytest

import ssd
from ssd.config import CONFIG_DIR, ConfigError, available_configs, load_config

# SPEC section 3: feature maps and anchor counts of the configs that matter
EXPECTED = {
    "coco_300x300": ([(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)], 8732),
    "test_8MP": ([(270, 480), (135, 240), (68, 120), (34, 60), (32, 58), (30, 56)], 788144),
    "baseline_8MP": ([(270, 480), (135, 240), (68, 120), (34, 60), (32, 58), (30, 56)], 788144),
    "baseline_8MP_ss_scales_all": ([(270, 480), (135, 240), (68, 120), (34, 60), (17, 30), (9, 15)], 776580),
    "baseline_8MP_ss_scales_fm1_5x5_all": (
        [(270, 480), (135, 240), (68, 120), (34, 60), (17, 30), (9, 15), (5, 8)],
        776740,
    ),
    "baseline_4MP_ss_all": ([(180, 320), (90, 160), (45, 80), (23, 40), (12, 20), (6, 10)], 345120),
    "ssdlite_coco_300x300": ([(19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)], 3000),
}


def test_every_required_config_ships():
    assert set(EXPECTED) <= set(available_configs())


def test_configs_ship_inside_the_package_and_load_by_name_from_any_folder(tmp_path, monkeypatch):
    assert CONFIG_DIR.parent == Path(ssd.__file__).resolve().parent
    monkeypatch.chdir(tmp_path)
    assert load_config("coco_300x300").model.image_size == (300, 300)


def test_a_config_in_the_working_folder_comes_before_the_shipped_one(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    text = (CONFIG_DIR / "coco_300x300.yaml").read_text().replace("scales: [21, 45,", "scales: [30, 45,")
    assert "[30, 45," in text
    (tmp_path / "configs" / "coco_300x300.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    assert load_config("coco_300x300").model.scales[0] == 30


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_derived_feature_sizes_and_anchor_counts(name):
    config = load_config(name)
    sizes, anchors = EXPECTED[name]
    assert list(config.model.feature_sizes) == sizes
    assert config.model.num_anchors == anchors


def test_mlperf_config_keeps_reference_width_quirk():
    model = load_config("baseline_8MP_ss_scales_fm1_5x5_all").model
    assert model.layers.middle_channels == (1024, 512, 512, 256, 256, 256)
    assert model.head.loc[0].kernel_size == (5, 5)
    assert load_config("coco_300x300").model.layers.middle_channels == (256, 256, 128, 128, 128)


def test_dataset_section():
    dataset = load_config("baseline_8MP_ss_scales_fm1_5x5_all").dataset
    assert len(dataset.folders) == 26 and len(dataset.cameras) == 3
    assert dataset.ignore_classes is None  # not stated: the Cognata module's default, (2, 25, 31)
    test = load_config("test_8MP").dataset
    assert test.folders == ("10001_Urban_Clear_Noon",) and test.cameras == ("Cognata_Camera_01_8M",)


def test_reference_python_config_loads_like_yaml(tmp_path: Path):
    path = tmp_path / "ref_coco.py"
    path.write_text(
        """
model = dict(
    image_size = (300, 300),
    feat_size = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)],
    steps = [8, 16, 32, 64, 100, 300],
    scales = [21, 45, 99, 153, 207, 261, 315],
    aspect_ratios = [[2, 0.5], [2, 0.5, 3, 1/3], [2, 0.5, 3, 1/3], [2, 0.5, 3, 1/3], [2, 0.5], [2, 0.5]],
    pre_backbone = None,
    backbone = [{'block_no': 6, 'layer': 0, 'conv': [{1: {'kernel_size': (1, 1), 'padding': (0,0), 'stride': (1, 1)},
                                                   2: {'kernel_size': (3, 3), 'padding': (1,1), 'stride': (1, 1)}}],
                        'downsample': {'kernel_size': (1, 1), 'padding': 0, 'stride': (1, 1)}}],
    middle_blocks = [{'kernel_size': (1,3), 'padding': (0,1), 'stride': (1,2)},
                    {'kernel_size': (1,3), 'padding': (0,1), 'stride': (1,2)},
                    {'kernel_size': (1,3), 'padding': (0,1), 'stride': (1,2)},
                    {'kernel_size': (1,3), 'padding': (0,0), 'stride': (1,1)},
                    {'kernel_size': (1,3), 'padding': (0,0), 'stride': (1,1)}],
    head = {'num_defaults': [4, 6, 6, 6, 4, 4],
            'loc': [{'kernel_size': 3, 'padding': 1, 'stride': 1}] * 6,
            'conf': [{'kernel_size': 3, 'padding': 1, 'stride': 1}] * 6}
)
dataset = dict(train_folders=['10001_Urban_Clear_Noon'], val_folders=['10002_Urban_Clear_Morning'],
               cameras=['Cognata_Camera_01_8M'])
"""
    )
    from_python = load_config(path)
    assert from_python.model == load_config("coco_300x300").model
    assert from_python.dataset.folders == ("10001_Urban_Clear_Noon", "10002_Urban_Clear_Morning")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def test_stated_feature_size_that_disagrees_names_both(tmp_path, tiny_config_path):
    text = tiny_config_path.read_text().replace("image_size: [64, 128]", "image_size: [64, 128]\n  feat_size: [[8, 16], [5, 8]]")
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    message = str(err.value)
    assert "model.feat_size" in message and "[(8, 16), (5, 8)]" in message and "[(8, 16), (4, 8)]" in message


@pytest.mark.parametrize(
    "old, new, field",
    [
        ("scales: [16, 32, 64]", "scales: [16, 32]", "model.scales"),
        ("  steps: [8, 16]\n", "", "model.steps"),
        ("aspect_ratios: [[2], []]", "aspect_ratios: [[2]]", "model.aspect_ratios"),
        ("num_defaults: [3, 2]", "num_defaults: [4, 2]", "model.head.num_defaults[0]"),
        ("scales: [16, 32, 64]", "scales: [16, x, 64]", "model.scales[1]"),
        ("    - {kernel_size: [1, 3], padding: [0, 1], stride: [1, 2]}\n", "", "model.middle_blocks"),
    ],
)
def test_invalid_config_names_the_field(tmp_path, tiny_config_path, old, new, field):
    text = tiny_config_path.read_text()
    assert old in text
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text.replace(old, new)))
    assert field in str(err.value) and "bad.yaml" in str(err.value)


def test_missing_model_section_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="model: missing section"):
        load_config(_write(tmp_path, "dataset: {folders: []}\n"))
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(_write(tmp_path, "model: [1, 2\n"))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("# d\xe9faut\nmodel: {}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1.yaml: not a UTF-8 text file \(invalid continuation byte at byte 3\)"):
        load_config(latin1)


def test_unknown_config_name_lists_the_known_ones():
    with pytest.raises(ConfigError, match="coco_300x300"):
        load_config("no_such_config")


def test_image_too_small_for_the_layers(tmp_path, tiny_config_path):
    text = tiny_config_path.read_text().replace("image_size: [64, 128]", "image_size: [16, 16]")
    text = text.replace("padding: [0, 1], stride: [1, 2]", "padding: [0, 0], stride: [1, 1]")
    with pytest.raises(ConfigError, match="image too small"):
        load_config(_write(tmp_path, text))
