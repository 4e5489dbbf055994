"""The evaluation report at MLPerf scale: ``build_report`` and its page against the plain COCO evaluation.

6,000 frames (MLPerf Automotive's validation set) with 500 detections each, 14 classes, about 7 objects
per frame with a distance each (``synthetic_case`` of tests/support.py): the report's numbers (headline,
size and distance breakdowns, confusion matrix, comparison-ready frame errors, curves) and its HTML,
without the worst frames' pictures (those read 12 images from the dataset). The figure is the report's
time; the peer is ``evaluate_coco`` on the same input (what ``ssd evaluate`` scores with), so the ratio
says what the report costs on top of the headline.

    .venv/bin/python benchmarks/bench_report.py [--images 6000] [--detections 500]
"""
from __future__ import annotations

from common import report  # first: it turns huge pages on before torch loads
import argparse
import time

import numpy as np
from support import synthetic_case

from ssd.evaluation import evaluate_coco
from ssd.evaluation.report import build_report
from ssd.evaluation.report_html import render_html


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--detections", type=int, default=500)
    args = parser.parse_args()

    gt, detections = synthetic_case(
        0, num_images=args.images, num_categories=14, dets_per_image=args.detections, overfull_images=0,
        crowd_fraction=0.0, empty_fraction=0.01, size=(3840, 2160),
    )
    rng = np.random.default_rng(0)
    for ann in gt["annotations"]:
        ann["distance"] = float(rng.uniform(0, 300))
    print(f"case: {len(gt['images'])} frames, {len(gt['annotations'])} objects, {len(detections)} detections", flush=True)

    start = time.perf_counter()
    headline = evaluate_coco(gt, detections)
    plain_s = time.perf_counter() - start
    start = time.perf_counter()
    built = build_report("benchmark", gt, detections)
    numbers = built.to_dict()
    page = render_html(numbers)
    report_s = time.perf_counter() - start
    assert numbers["headline"]["mAP"] == headline.map
    print(f"report: {len(page) / 1e6:.1f} MB of HTML; mAP {headline.map:.4f}", flush=True)
    # a report costs several evaluations; the figure printed as a ratio is plain evaluation / report (below 1)
    report(f"report, {args.images} frames x {args.detections} dets", report_s, plain_s, "ssd evaluate's COCO evaluation alone (evaluate_coco)")


if __name__ == "__main__":
    main()
