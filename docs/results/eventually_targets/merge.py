"""Merge per-row `tritemporal compare` results on the same held-out windows into one comparison
(table, JSON and plots through `write_comparison`), refusing results whose data, windows,
bootstrap or seed differ (their resamples would differ, and the cells with them).

usage: python merge.py OUT RESULT_DIR...
"""

import json
import sys
from pathlib import Path

from tritemporal.eval.compare import COMPARISON_JSON, markdown_table, write_comparison

SHARED = ("data", "windows", "videos", "bootstrap", "seed", "ttm")


def merge(folders: list[str]) -> dict:
    """One comparison result holding every row of the results in `folders`, in order."""
    parts = [json.loads((Path(f) / COMPARISON_JSON).read_text()) for f in folders]
    for part, folder in zip(parts, folders, strict=True):
        differs = [k for k in SHARED if part[k] != parts[0][k]]
        if differs:
            raise SystemExit(f"{folder} differs from {folders[0]} in {differs}")
    merged = {k: parts[0][k] for k in SHARED}
    merged["chance"] = {k: v for p in parts for k, v in p["chance"].items()}
    merged["columns"] = {k: v for p in parts for k, v in p["columns"].items()}
    merged["rows"] = [row for p in parts for row in p["rows"]]
    return merged


if __name__ == "__main__":
    result = merge(sys.argv[2:])
    write_comparison(result, sys.argv[1])
    print(markdown_table(result))
