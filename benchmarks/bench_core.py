"""Anchors, encoding, decoding and loss on the MLPerf 8 MP config, against the reference's way.

Run: .venv/bin/python benchmarks/bench_core.py
The reference's algorithms come from tests/reference_impl.py (Python-loop anchors, unchunked
box_iou matching, per-class Python NMS, double-argsort loss). They run in a process of their own
with PyTorch's default allocator, as the reference runs (importing ``ssd`` keeps an explicit
``THP_MEM_ALLOC_ENABLE=0``); ours run as ``ssd`` runs them, with huge pages for large tensors
(``ssd.huge_pages``). The reference's figures with huge pages are printed too.
"""
from __future__ import annotations

from common import best_time, report, run_side  # first: it turns huge pages on before torch loads
import argparse
import json
from dataclasses import dataclass

import torch

from reference_impl import reference_decode, reference_default_boxes, reference_encode, reference_loss
from ssd import MultiBoxLoss, TargetEncoder, default_boxes, load_config, postprocess

CONFIG = "baseline_8MP_ss_scales_fm1_5x5_all"
NUM_CLASSES = 15
NUM_BOXES = 40
FIGURES = {
    "anchors": ("anchor construction (8 MP config)", "Python-loop anchors (reference algorithm)", 20),
    "encode": (f"encode 1 image, {NUM_BOXES} boxes", "unchunked box_iou + Python loop (reference Encoder)", 5),
    "decode": ("decode 1 image (500 detections)", "per-class Python NMS (reference decode_batch)", 10),
    "loss": ("loss forward+backward, 2 images", "dense loss, two full argsorts (reference Loss)", 2),
}


@dataclass
class Inputs:
    """The same inputs in every process: seeded ground truth and predictions for the config's anchors."""

    model: object
    anchors: torch.Tensor
    boxes: list[torch.Tensor]
    labels: torch.Tensor
    locs: torch.Tensor
    confs: torch.Tensor
    pred_locs: torch.Tensor
    pred_confs: torch.Tensor


def random_boxes(generator: torch.Generator, count: int) -> torch.Tensor:
    low = torch.rand(count, 2, generator=generator) * 0.8
    return torch.cat((low, low + 0.01 + torch.rand(count, 2, generator=generator) * 0.19), dim=1)


def make_inputs() -> Inputs:
    generator = torch.Generator().manual_seed(0)
    model = load_config(CONFIG).model
    anchors = default_boxes(model)
    num_anchors = anchors.shape[0]
    boxes = [random_boxes(generator, NUM_BOXES), random_boxes(generator, NUM_BOXES)]
    labels = torch.randint(1, NUM_CLASSES, (NUM_BOXES,), generator=generator)
    locs = torch.randn(1, 4, num_anchors, generator=generator) * 0.5
    confs = torch.randn(1, NUM_CLASSES, num_anchors, generator=generator)
    pred_locs = torch.randn(2, 4, num_anchors, generator=generator, requires_grad=True)
    pred_confs = torch.randn(2, NUM_CLASSES, num_anchors, generator=generator, requires_grad=True)
    return Inputs(model, anchors, boxes, labels, locs, confs, pred_locs, pred_confs)


def reference_seconds() -> dict[str, float]:
    """The reference's algorithms on :func:`make_inputs` (run in a process of its own)."""
    inputs = make_inputs()
    model, anchors, labels = inputs.model, inputs.anchors, inputs.labels
    # the reference's loss takes the matched boxes and labels, which its data workers compute
    encoded = [reference_encode(anchors, b, labels) for b in inputs.boxes]
    matched, anchor_labels = torch.stack([m.t() for m, _ in encoded]), torch.stack([l for _, l in encoded])
    return {
        "anchors": best_time(
            lambda: reference_default_boxes(model.image_size, model.feature_sizes, model.steps, model.scales, model.aspect_ratios),
            repeats=1, warmup=0,
        ),
        "encode": best_time(lambda: reference_encode(anchors, inputs.boxes[0], labels), repeats=3),
        "decode": best_time(lambda: reference_decode(anchors, inputs.locs, inputs.confs, max_output=500), repeats=3),
        "loss": best_time(
            lambda: reference_loss(anchors, inputs.pred_locs, inputs.pred_confs, matched, anchor_labels).backward()
        ),
    }


def our_seconds(inputs: Inputs) -> dict[str, float]:
    encoder = TargetEncoder(inputs.anchors)
    targets = encoder.encode_batch(inputs.boxes, [inputs.labels, inputs.labels])
    loss = MultiBoxLoss()
    return {
        "anchors": best_time(lambda: default_boxes(inputs.model), repeats=5),
        "encode": best_time(lambda: encoder(inputs.boxes[0], inputs.labels)),
        "decode": best_time(lambda: postprocess(inputs.locs, inputs.confs, inputs.anchors, max_detections=500)),
        "loss": best_time(lambda: loss(inputs.pred_locs, inputs.pred_confs, targets).total.backward()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference-side", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.reference_side:
        print(json.dumps(reference_seconds()))
        return
    reference = run_side(__file__, ["--reference-side"])
    reference_huge_pages = run_side(__file__, ["--reference-side"], huge_pages=True)
    inputs = make_inputs()
    ours = our_seconds(inputs)
    print(f"config {CONFIG}: {inputs.anchors.shape[0]:,} anchors, {NUM_CLASSES} classes, {torch.get_num_threads()} threads")
    for key, (figure, baseline, target) in FIGURES.items():
        report(figure, ours[key], reference[key], baseline, target=target)
        print(f"    the reference with huge pages: {reference_huge_pages[key]:.4g} s", flush=True)


if __name__ == "__main__":
    main()
