"""Thin entry point: `python scripts/train.py ARGS` == `tritemporal train ARGS`."""

import sys

from tritemporal.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
