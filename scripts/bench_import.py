"""Time `tritemporal import bdd100k` on N generated videos with full-size info files.

    python scripts/bench_import.py 1000 /tmp/bench_import --out docs/bench/import_bdd_1k.json

Each info file is as large as a real one (40 s: 41 GPS fixes, 2000 accelerometer and 2000 gyro
samples, ~0.3 MB of JSON); the videos are 1 KB placeholders, which is fair because the importer
links videos and never decodes them. Times the first import (read, label, write every sidecar)
and a rerun (everything resumed), each in a fresh process, and extrapolates linearly to 100k.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

START_MS = 1_490_222_251_368


def write_dataset(root: Path, n: int) -> None:
    """N placeholder videos with full-size info JSONs (half of them brake)."""
    rng = np.random.default_rng(0)
    for i in range(n):
        name = f"{i:08x}-{i * 7919 % 16**8:08x}"
        video = root / "videos" / "100k" / "train" / f"{name}.mov"
        info = root / "info" / "100k" / "train" / f"{name}.json"
        if info.exists():
            continue
        video.parent.mkdir(parents=True, exist_ok=True)
        info.parent.mkdir(parents=True, exist_ok=True)
        video.write_bytes(os.urandom(1024))
        speed = np.full(41, rng.uniform(5, 20))
        if i % 2:
            speed[20:] = np.maximum(speed[20:] - 2.5 * np.arange(1, 22), 0.0)
        fixes = [
            {"timestamp": START_MS - 300 + 1000 * k, "latitude": 40.70 + 1e-4 * k,
             "longitude": -73.79, "speed": float(v), "course": 90.0, "accuracy": 10.0}
            for k, v in enumerate(speed)
        ]  # fmt: skip
        imu = [
            {"x": float(x), "y": 0.01, "z": 0.02, "timestamp": START_MS + 20 * k}
            for k, x in enumerate(rng.normal(0.99, 0.01, 2000))
        ]
        data = {"rideID": "0" * 32, "filename": f"{name}.mov", "timelapse": False,
                "startTime": START_MS, "endTime": START_MS + 40_000, "locations": fixes,
                "accelerometer": imu, "gyro": imu}  # fmt: skip
        info.write_text(json.dumps(data))


def timed_import(src: Path, out: Path) -> dict:
    """`tritemporal import bdd100k` in a fresh process: wall seconds and the summary."""
    summary = out.parent / f"{out.name}.summary.json"
    begin = time.perf_counter()
    subprocess.run(
        ["tritemporal", "import", "bdd100k", str(src), "--out", str(out), "--json", str(summary)],
        check=True, capture_output=True,
    )  # fmt: skip
    wall = time.perf_counter() - begin
    return {**json.loads(summary.read_text()), "wall_s": wall}


def main() -> None:
    """Generate, import twice, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("n", type=int)
    parser.add_argument("root", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    src, out = args.root / "bdd100k", args.root / "imported"
    write_dataset(src, args.n)
    info_mb = sum(p.stat().st_size for p in (src / "info").rglob("*.json")) / 1e6
    first, again = timed_import(src, out), timed_import(src, out)
    report = {
        "videos": args.n,
        "info_json_mb": round(info_mb, 1),
        "cpus": os.cpu_count(),
        "first_import_s": round(first["wall_s"], 2),
        "first_import_loop_s": round(first["seconds"], 2),
        "imported": first["imported"],
        "auto_events": first["events"],
        "rerun_s": round(again["wall_s"], 2),
        "resumed": again["resumed"],
        "per_100k_first_import_min": round(first["seconds"] / args.n * 1e5 / 60, 1),
        "per_100k_rerun_min": round(again["seconds"] / args.n * 1e5 / 60, 2),
        "note": "*_s: wall time of the CLI in a fresh process (start-up included); loop_s and "
        "per_100k: the import loop alone, extrapolated linearly",
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
