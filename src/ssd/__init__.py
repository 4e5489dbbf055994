"""ssd: SSD-ResNet50 and SSDLite-MobileNetV2 detectors, compatible with the MLPerf Automotive reference.

The public API::

    config = load_config("baseline_8MP_ss_scales_fm1_5x5_all")
    model = build_model(config, num_classes=15)
    load_checkpoint(model, "ssd_resnet50.pth")
    anchors = default_boxes(config)                      # [A, 4] cx, cy, w, h, normalised
    locs, confs = model(images)                          # [N, 4, A], [N, C, A]
    detections = postprocess(locs, confs, anchors, image_sizes=[(2160, 3840)] * len(images))

Importing the package loads nothing heavy and changes nothing in the process: each name is imported
from its module on first use (PEP 562), and the memory policies (:mod:`ssd.huge_pages`,
:mod:`ssd.heap_retention`) are turned on only by the CLI or an explicit call.
"""
from __future__ import annotations

from ssd.lazy import lazy_exports

# public name -> module that defines it
_EXPORTS = {
    "Config": "ssd.config",
    "ConfigError": "ssd.config",
    "Detector": "ssd.inference",
    "LossTargets": "ssd.loss",
    "MultiBoxLoss": "ssd.loss",
    "TargetEncoder": "ssd.matching",
    "build_model": "ssd.models",
    "default_boxes": "ssd.anchors",
    "load_checkpoint": "ssd.checkpoint",
    "load_config": "ssd.config",
    "postprocess": "ssd.decoding",
}

__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
