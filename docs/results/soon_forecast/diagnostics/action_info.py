"""Issue 30 diagnostic: how much of copy-last's SOON error can the ego's actions explain at all?
Per window: delta = teacher's whole-clip SOON targets - the present (what copy-last misses).
Ridge regressions, fitted on half the held-out videos and scored on the other half, predict
delta from (a) nothing (the mean change), (b) the ego's state and actions (the action rows the
model gets, standardised), (c) the present tokens pooled (what the scene is), (d) both.
Reported: L1 of present + predicted delta, over copy-last's L1, per SOON step.
Usage: python action_info.py SOURCE HELD_OUT OUT.json [every]"""

import json
import sys

import numpy as np
import torch
from held_out import model_and_batches

from tritemporal.loader import stack_signals

source, held, out = sys.argv[1:4]
every = int(sys.argv[4]) if len(sys.argv) > 4 else 3
model, batches = model_and_batches(source, held, every)
c = model.config.clip
now_steps, soon_steps, _ = c.slices
hw = c.grid[1] * c.grid[2]
signals = ("speed", "steering", "acceleration")


deltas, presents, acts, groups = [], [], [], []
for samples in batches:
    video = torch.stack([s["video"] for s in samples])
    clips = model.normalize(video)
    b = len(samples)
    whole = model.teacher_targets(clips)[:, model.soon_idx[0]]
    d = whole.shape[-1]
    present = model.present_step(clips)
    deltas.append((whole.view(b, soon_steps, hw, d) - present.view(b, 1, hw, d)).numpy())
    presents.append(present.view(b, hw, d).numpy())
    # all rows: the last NOW frame's state, then every SOON frame
    rows = stack_signals(samples, signals)[:, c.now_frames - 1 : c.now_frames + c.soon_frames]
    acts.append(rows.reshape(b, -1).numpy())
    groups += [str(s.get("path", "")) for s in samples]
delta, present, act = np.concatenate(deltas), np.concatenate(presents), np.concatenate(acts)
vids = sorted(set(groups))
train = np.isin(groups, vids[: len(vids) // 2])
test = ~train


def standardise(x):
    m, s = x[train].mean(0), x[train].std(0) + 1e-6
    return (x - m) / s


a = standardise(act)
p = standardise(present.reshape(len(present), hw, -1).mean(1))  # pooled present, (N, D)
p_tok = present.reshape(len(present), -1)
feats = {
    "mean change": np.zeros((len(a), 0)),
    "actions": a,
    "present pooled": p,
    "actions + present": np.concatenate([a, p], 1),
}
arrays = {"delta": delta, "present": present, "act": act, "train": train}
np.savez_compressed(out.replace(".json", ".npz"), **arrays)
res = {"source": source, "windows": len(a), "train": int(train.sum()), "test": int(test.sum())}
for step in range(soon_steps):
    y = delta[:, step].reshape(len(delta), -1)
    copy = np.abs(y[test]).mean()
    res[f"copy_l1_step{step}"] = float(copy)
    for name, x in feats.items():
        x1 = np.concatenate([x, np.ones((len(x), 1))], 1)
        best = None
        for lam in (1e-1, 1e1, 1e3):
            reg = lam * np.eye(x1.shape[1])
            reg[-1, -1] = 0
            w = np.linalg.solve(x1[train].T @ x1[train] + reg, x1[train].T @ y[train])
            l1 = np.abs(y[test] - x1[test] @ w).mean() / copy
            best = l1 if best is None else min(best, l1)
        res[f"{name}/copy step{step}"] = round(float(best), 4)
print(json.dumps(res, indent=1))
with open(out, "w") as fh:
    json.dump(res, fh, indent=1)
