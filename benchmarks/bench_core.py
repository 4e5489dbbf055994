"""Anchors, encoding, decoding and loss on the MLPerf 8 MP config, against the reference's way.

Run: .venv/bin/python benchmarks/bench_core.py
The reference's algorithms come from tests/reference_impl.py (Python-loop anchors, unchunked
box_iou matching, per-class Python NMS, double-argsort loss).
"""
from __future__ import annotations

import torch

from common import best_time, report
from reference_impl import reference_decode, reference_default_boxes, reference_encode, reference_loss
from ssd import MultiBoxLoss, TargetEncoder, default_boxes, load_config, postprocess

CONFIG = "baseline_8MP_ss_scales_fm1_5x5_all"
NUM_CLASSES = 15
NUM_BOXES = 40


def random_boxes(generator: torch.Generator, count: int) -> torch.Tensor:
    low = torch.rand(count, 2, generator=generator) * 0.8
    return torch.cat((low, low + 0.01 + torch.rand(count, 2, generator=generator) * 0.19), dim=1)


def main() -> None:
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = load_config(CONFIG).model
    print(f"config {CONFIG}: {model.num_anchors:,} anchors, {NUM_CLASSES} classes, {torch.get_num_threads()} threads")

    ours = best_time(lambda: default_boxes(model), repeats=5)
    ref = best_time(
        lambda: reference_default_boxes(model.image_size, model.feature_sizes, model.steps, model.scales, model.aspect_ratios),
        repeats=1, warmup=0,
    )
    report("anchor construction (8 MP config)", ours, ref, "Python-loop anchors (reference algorithm)", target=20)

    anchors = default_boxes(model)
    encoder = TargetEncoder(anchors)
    boxes, labels = random_boxes(generator, NUM_BOXES), torch.randint(1, NUM_CLASSES, (NUM_BOXES,), generator=generator)
    ours = best_time(lambda: encoder(boxes, labels))
    ref = best_time(lambda: reference_encode(anchors, boxes, labels), repeats=3)
    report(f"encode 1 image, {NUM_BOXES} boxes", ours, ref, "unchunked box_iou + Python loop (reference Encoder)", target=5)

    num_anchors = anchors.shape[0]
    locs = torch.randn(1, 4, num_anchors, generator=generator) * 0.5
    confs = torch.randn(1, NUM_CLASSES, num_anchors, generator=generator)
    ours = best_time(lambda: postprocess(locs, confs, anchors, max_detections=500))
    ref = best_time(lambda: reference_decode(anchors, locs, confs, max_output=500), repeats=3)
    report("decode 1 image (500 detections)", ours, ref, "per-class Python NMS (reference decode_batch)", target=8)

    offsets, anchor_labels = encoder.encode_batch([boxes, random_boxes(generator, NUM_BOXES)], [labels, labels])
    gloc = torch.stack([reference_encode(anchors, b, labels)[0].t() for b in (boxes, boxes)])
    pred_locs = torch.randn(2, 4, num_anchors, generator=generator, requires_grad=True)
    pred_confs = torch.randn(2, NUM_CLASSES, num_anchors, generator=generator, requires_grad=True)
    loss = MultiBoxLoss()
    ours = best_time(lambda: loss(pred_locs, pred_confs, offsets, anchor_labels).total.backward())
    ref = best_time(lambda: reference_loss(anchors, pred_locs, pred_confs, gloc, anchor_labels).backward())
    report("loss forward+backward, 2 images", ours, ref, "dense loss, two full argsorts (reference Loss)", target=2)


if __name__ == "__main__":
    main()
