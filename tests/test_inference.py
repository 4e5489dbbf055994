"""The Detector API: any image size and input type, batching, class names, model loading, bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from support import TINY_YAML, TinyFiles, assert_same_detections, write_image

from ssd import Detector, default_boxes, load_config, postprocess
from ssd.checkpoint import CheckpointError
from ssd.data import eval_transform
from ssd.data.labels import cognata_fixed
from ssd.evaluation import score_detections
from ssd.checkpoint import load_model
from ssd.data.labels import class_names_for, default_class_names
from ssd.inference import InferenceError
from ssd.models.fold import fold_batchnorm
from ssd.models import build_model


@pytest.fixture(scope="module")
def detector(tiny_files: TinyFiles) -> Detector:
    # a score threshold well above the random model's noise floor: a few dozen detections per image
    return Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config, score_threshold=0.3, max_detections=500)


def test_inputs_of_any_type_and_size(detector: Detector, tmp_path: Path):
    pixels = write_image(tmp_path / "a.png", (90, 150))
    images = [tmp_path / "a.png", pixels, torch.from_numpy(pixels).permute(2, 0, 1), torch.rand(3, 40, 50), str(tmp_path / "a.png")]
    results = detector(images)
    assert len(results) == 5
    for result in results:
        assert set(result) == {"boxes", "scores", "labels", "names"}
        assert result["boxes"].shape == (len(result["scores"]), 4) and len(result["names"]) == len(result["labels"]) > 0
        assert torch.all(result["scores"][:-1] >= result["scores"][1:])
        assert result["names"] == [detector.class_names[label] for label in result["labels"].tolist()]
    for same in (results[1], results[2], results[4]):  # the path, its array and its tensor are one image
        assert_same_detections(same, results[0])


def test_boxes_are_pixels_of_the_original_image(detector: Detector, tiny_files: TinyFiles):
    """Detector == resize + normalise, forward, postprocess with the image's own (H, W)."""
    image = torch.randint(0, 256, (3, 150, 333), dtype=torch.uint8)
    config = load_config(tiny_files.config)
    model, _ = load_model(tiny_files.checkpoint, config)
    with torch.inference_mode():
        locs, confs = model(eval_transform(config.model.image_size)(image).unsqueeze(0))
    expected = postprocess(locs, confs, default_boxes(config), score_threshold=0.3, max_detections=500, image_sizes=[(150, 333)])[0]
    assert_same_detections(detector([image])[0], expected)


def test_batching_memory_format_and_folding_do_not_change_results(detector: Detector, tiny_files: TinyFiles):
    images = [torch.randint(0, 256, (3, 64 + 7 * k, 128 - 5 * k), dtype=torch.uint8) for k in range(5)]
    plain = Detector.from_checkpoint(
        tiny_files.checkpoint, tiny_files.config, batch_size=1, channels_last=False, fold_bn=False, score_threshold=0.3, max_detections=500,
    )
    assert detector.batch_size == 4 and any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.network.modules())
    for a, b in zip(plain(images), detector(images)):
        assert_same_detections(a, b)


@pytest.mark.parametrize("config", ["tiny", "ssdlite_coco_300x300"])
def test_fold_batchnorm_keeps_outputs(config: str, tiny_files: TinyFiles):
    model = build_model(load_config(tiny_files.config if config == "tiny" else config), 5).eval()
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():  # BatchNorm statistics of a trained model, not the identity of a new one
        if isinstance(module, torch.nn.BatchNorm2d):
            for tensor, low, high in ((module.running_mean, -0.5, 0.5), (module.running_var, 0.5, 2), (module.weight, 0.5, 1.5), (module.bias, -0.2, 0.2)):
                tensor.data.copy_(torch.rand(tensor.shape, generator=generator) * (high - low) + low)
    folded = fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # the original is left alone
    images = torch.randn(2, 3, 64, 128, generator=generator)
    with torch.inference_mode():
        for expected, actual in zip(model(images), folded(images)):
            torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def test_class_names_and_classes_from_bare_state_dicts(tiny_files: TinyFiles, tmp_path: Path):
    coco = default_class_names(81)
    assert (coco[0], coco[1], coco[80], len(coco)) == ("background", "person", "toothbrush", 81)
    assert default_class_names(15) == cognata_fixed().class_names
    assert default_class_names(4) == ("background", "1", "2", "3")
    assert class_names_for({"class_names": ["bg", "x", "y"]}, 3) == ("bg", "x", "y")

    model, checkpoint = load_model(tiny_files.checkpoint, tiny_files.config)
    bare = tmp_path / "bare.pth"
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, bare)  # a DDP state dict, no metadata
    detector = Detector.from_checkpoint(bare, tiny_files.config)
    assert detector.class_names == cognata_fixed().class_names  # 15 classes read off the conf head
    assert detector.metadata == {}
    assert Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config).metadata["label_map"] == checkpoint["label_map"]


def test_bad_input_is_a_clear_error(detector: Detector, tiny_files: TinyFiles, tmp_path: Path):
    with pytest.raises(TypeError, match="list"):
        detector(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(InferenceError, match=r"\[H, W, 3\] uint8"):
        detector([np.zeros((10, 10), np.uint8)])
    with pytest.raises(InferenceError, match="missing.png"):
        detector([tmp_path / "missing.png"])
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(InferenceError, match="broken.png"):
        detector([tmp_path / "broken.png"])
    with pytest.raises(CheckpointError, match="num_classes says 5"):
        Detector.from_checkpoint(tiny_files.checkpoint, tiny_files.config, num_classes=5)
    other = tmp_path / "other.yaml"
    other.write_text(TINY_YAML.replace("[[2], []]", "[[2, 3], []]").replace("[3, 2]", "[4, 2]"))
    with pytest.raises(CheckpointError, match="another config"):
        Detector.from_checkpoint(tiny_files.checkpoint, other)


def test_score_detections_restricts_ground_truth_to_the_images_run():
    ground_truth = {
        "images": [{"id": 1}, {"id": 2}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            {"id": 2, "image_id": 2, "category_id": 1, "bbox": [5, 5, 10, 10]},
        ],
        "categories": [{"id": 1, "name": "car"}],
    }
    found = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9}]
    assert score_detections(ground_truth, found, [1]).map == 1.0
    assert score_detections(ground_truth, found, [1, 2], thresholds="torchmetrics").map < 1.0
