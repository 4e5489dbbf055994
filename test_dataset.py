"""Seed-compatible entry point: ``python test_dataset.py --pretrained-model CKPT ...`` draws the
predictions on every validation image of a dataset (``ssd predict --dataset``; score threshold 0.5,
at most 100 boxes per image, Cognata at /cognata unless the flags say otherwise)."""
import sys

from ssd.cli.main import main

if __name__ == "__main__":
    defaults = ["--dataset", "Cognata", "--data-path", "/cognata", "--cls-threshold", "0.5", "--max-boxes", "100"]
    sys.exit(main(["predict", *defaults, *sys.argv[1:]]))
