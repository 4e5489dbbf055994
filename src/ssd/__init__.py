"""ssd: SSD-ResNet50 and SSDLite-MobileNetV2 detectors, compatible with the MLPerf Automotive reference.

The public API::

    config = load_config("baseline_8MP_ss_scales_fm1_5x5_all")
    model = build_model(config, num_classes=15)
    load_checkpoint(model, "ssd_resnet50.pth")
    anchors = default_boxes(config)                      # [A, 4] cx, cy, w, h, normalised
    locs, confs = model(images)                          # [N, 4, A], [N, C, A]
    detections = postprocess(locs, confs, anchors, image_sizes=[(2160, 3840)] * len(images))
"""
from ssd import huge_pages  # noqa: F401  (first: before torch is imported)
from ssd.anchors import default_boxes
from ssd.checkpoint import load_checkpoint
from ssd.config import Config, ConfigError, load_config
from ssd.inference import Detector
from ssd.loss import MultiBoxLoss
from ssd.matching import TargetEncoder
from ssd.models import build_model
from ssd.postprocess import postprocess

__all__ = [
    "Config",
    "ConfigError",
    "Detector",
    "MultiBoxLoss",
    "TargetEncoder",
    "build_model",
    "default_boxes",
    "load_checkpoint",
    "load_config",
    "postprocess",
]
