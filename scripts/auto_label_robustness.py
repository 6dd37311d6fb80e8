"""Auto-label agreement when the simulator's ego series are cut to phone-GPS quality:
1 Hz samples, speed noise 0.2 m/s, heading noise 1 deg (seeded)."""

import json
import sys
from pathlib import Path

import numpy as np

from tritemporal.config import AutoLabelConfig
from tritemporal.data.annotations import load_annotation
from tritemporal.data.ego_labels import agreement, ego_events

root, hz = Path(sys.argv[1]), float(sys.argv[2])
speed_sd, heading_sd = float(sys.argv[3]), np.radians(float(sys.argv[4]))
rng = np.random.default_rng(0)
cfg = AutoLabelConfig()
pairs = []
for path in sorted((root / "annotations").glob("*.json")):
    note = load_annotation(path)
    t = note.ego_time.numpy()
    grid = np.arange(t[0], t[-1] + 1e-9, 1 / hz)
    speed = np.interp(grid, t, note.ego["speed"].numpy()) + rng.normal(0, speed_sd, len(grid))
    heading = np.interp(grid, t, note.ego["heading"].numpy()) + rng.normal(0, heading_sd, len(grid))
    auto = ego_events(grid, {"speed": np.maximum(speed, 0), "heading": heading}, cfg)
    pairs.append((list(note.events), auto))
out = {
    "hz": hz,
    "speed_sd": speed_sd,
    "heading_sd_deg": float(sys.argv[4]),
    "files": len(pairs),
    "maneuvers": agreement(pairs),
}
print(json.dumps(out, indent=1))
