"""The evaluation report at MLPerf scale: what ``ssd report`` does (``write_report``) against the plain COCO evaluation.

6,000 frames (MLPerf Automotive's validation set) with 500 detections each, 14 classes, about 7 objects
per frame with a distance each (``synthetic_case`` of tests/support.py), the detections in a
``detections.json`` as ``ssd evaluate`` writes it: what ``ssd report`` does after loading the dataset
(``write_report``: reading the file, the report's numbers (headline, size and distance breakdowns,
confusion matrix, error types, comparison-ready frame errors, curves), report.json and report.html),
without the worst frames' pictures (those read 12 images from the dataset). The figure is the report's
time; the peer is ``evaluate_coco`` on the same file (what ``ssd evaluate`` scores with), so the ratio
says what the report costs on top of the headline.

    .venv/bin/python benchmarks/bench_report.py [--images 6000] [--detections 500]
"""
from __future__ import annotations

from common import report  # first: it turns huge pages on before torch loads
import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from support import synthetic_case

from ssd.evaluation import evaluate_coco
from ssd.report import Source, detections_of_folder, write_report


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

    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "detections.json").write_text(json.dumps(detections))
        del detections
        start = time.perf_counter()
        headline = evaluate_coco(gt, Path(folder, "detections.json"))
        plain_s = time.perf_counter() - start
        start = time.perf_counter()
        built = write_report(Path(folder), "benchmark", Source(gt, detections_of_folder(Path(folder))))
        report_s = time.perf_counter() - start
        page = Path(folder, "report.html").stat().st_size
    assert built.result.map == headline.map
    print(f"report: {page / 1e6:.1f} MB of HTML; mAP {headline.map:.4f}", flush=True)
    # a report costs several evaluations; the figure printed as a ratio is plain evaluation / report (below 1)
    report(f"report, {args.images} frames x {args.detections} dets", report_s, plain_s, "ssd evaluate's COCO evaluation alone (evaluate_coco)")


if __name__ == "__main__":
    main()
