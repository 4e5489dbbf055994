"""Seed-compatible entry point: ``python model_summary.py --config test_8MP`` (same as ``ssd summary``)."""
import sys

from ssd.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["summary", *sys.argv[1:]]))
