"""Issue 29/30 diagnostic: how much of copy-last's SOON error could any forecast of the SOON frames
remove, when the targets are the teacher over the whole clip (SOON tokens have attended to the
EVENTUALLY frames 2 s later)? Per SOON step, L1 to the whole-clip targets of: copy-last (the
teacher's present), the run's forecast, and two oracles that have SEEN the SOON frames: the
teacher over NOW+SOON frames, and over the frames up to that step's end (causal). Then the same
L1s against the NOW+SOON targets (what a causal target definition would score).
Usage: python soon_targets.py SOURCE HELD_OUT OUT.json [every]"""

import json
import sys

import numpy as np
import torch
from held_out import model_and_batches

from tritemporal.loader import stack_signals

source, held, out = sys.argv[1:4]
every = int(sys.argv[4]) if len(sys.argv) > 4 else 6
model, batches = model_and_batches(source, held, every)
c = model.config.clip
now_steps, soon_steps, _ = c.slices
hw = c.grid[1] * c.grid[2]


sums: dict[str, np.ndarray] = {}
n = 0
for samples in batches:
    video = torch.stack([s["video"] for s in samples])
    actions = None
    if model.action is not None:
        actions = stack_signals(samples, model.action.signals)[:, c.action_rows]
    soon = model.encode(video, actions=actions)["soon"].float()
    clips = model.normalize(video)
    b = len(samples)
    d = soon.shape[-1]
    whole = model.teacher_targets(clips)[:, model.soon_idx[0]].view(b, soon_steps, hw, d)
    nowsoon = model.teacher_targets(clips[:, :, : c.now_frames + c.soon_frames])
    nowsoon = nowsoon[:, now_steps * hw :].view(b, soon_steps, hw, d)
    causal = torch.cat(
        [model.causal_soon_inputs(clips).view(b, soon_steps - 1, hw, d), nowsoon[:, -1:]], dim=1
    )
    present = model.present_step(clips).view(b, 1, hw, d).expand_as(whole)
    guesses = {
        "copy": present,
        "model": soon.view(b, soon_steps, hw, d),
        "oracle_nowsoon": nowsoon,
        "oracle_causal": causal,
    }
    for tname, target in (("whole", whole), ("nowsoon", nowsoon)):
        for g, guess in guesses.items():
            key = f"{g}|{tname}"
            l1 = (guess - target).abs().mean(dim=(2, 3)).sum(0).numpy()
            sums[key] = sums.get(key, 0) + l1
    n += b
res = {k: (v / n).round(5).tolist() for k, v in sums.items()}
for t in ("whole", "nowsoon"):
    cp = np.array(res[f"copy|{t}"])
    for g in ("model", "oracle_nowsoon", "oracle_causal"):
        res[f"{g}/copy|{t}"] = (np.array(res[f"{g}|{t}"]) / cp).round(4).tolist()
res |= {"source": source, "windows": n, "every": every}
with open(out, "w") as fh:
    json.dump(res, fh, indent=1)
print(json.dumps(res, indent=1))
