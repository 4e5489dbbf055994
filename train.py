"""Seed-compatible entry point: ``python train.py ...`` (also under torchrun / torch.distributed.launch)."""
import sys

from ssd.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
