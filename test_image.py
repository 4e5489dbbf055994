"""Seed-compatible entry point: ``python test_image.py --pretrained-model CKPT --input IMAGE [--output OUT]``
draws the detections on one image (``ssd predict``; score threshold 0.3, output ``<input>_prediction.jpg``)."""
import sys

from ssd.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["predict", "--cls-threshold", "0.3", *sys.argv[1:]]))
