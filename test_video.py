"""Seed-compatible entry point: ``python test_video.py --pretrained-model CKPT --input VIDEO [--output OUT]``
draws the detections on every frame of a video (``ssd predict``; score threshold 0.35, output
``<input>_prediction.mp4``)."""
import sys

from ssd.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["predict", "--cls-threshold", "0.35", *sys.argv[1:]]))
