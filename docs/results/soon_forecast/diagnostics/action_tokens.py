"""Issue 30 diagnostic, token level: can the ego's actions, acting on the scene's content, explain
copy-last's SOON error? Per token, ridge regressions (fitted on half the held-out videos, scored
on the other half) predict the change (target - present) from the present token and its four
grid neighbours (content: "the scene keeps drifting as it does"), and from those times the ego's
speed, mean steering and mean acceleration over the SOON frames (content x action: "steering
left shifts this content right"). Reads action_info.py's npz.
Usage: action_tokens.py NPZ OUT.json"""

import json
import sys

import numpy as np

z = np.load(sys.argv[1])
delta, present, act, train = z["delta"], z["present"], z["act"], z["train"]
n, steps, hw, d = delta.shape
gh, gw = 4, hw // 4
rows = act.reshape(n, -1, 3)  # (N, 1 + soon_frames, [speed, steering, acceleration])
summ = np.stack([rows[:, 0, 0], rows[:, 1:, 1].mean(1), rows[:, 1:, 2].mean(1)], 1)
summ = (summ - summ[train].mean(0)) / (summ[train].std(0) + 1e-6)
grid = present.reshape(n, gh, gw, d)
pad = np.pad(grid, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
hood = np.concatenate(
    [grid, pad[:, 1:-1, :-2], pad[:, 1:-1, 2:], pad[:, :-2, 1:-1], pad[:, 2:, 1:-1]], -1
).reshape(n, hw, 5 * d)
rng = np.random.default_rng(0)
tr_idx = np.flatnonzero(train)
te_idx = np.flatnonzero(~train)
res = {"windows": int(n), "train_windows": len(tr_idx), "test_windows": len(te_idx)}


def design(idx, with_actions):
    x = hood[idx]  # (n, hw, 5d)
    parts = [x]
    if with_actions:
        parts += [x * summ[idx, k, None, None] for k in range(3)]
        parts += [np.broadcast_to(summ[idx, None, :], (len(idx), hw, 3))]
    x = np.concatenate(parts, -1).reshape(len(idx) * hw, -1)
    return np.concatenate([x, np.ones((len(x), 1))], 1)


for step in range(steps):
    y_tr = delta[tr_idx, step].reshape(-1, d)
    y_te = delta[te_idx, step].reshape(-1, d)
    copy = np.abs(y_te).mean()
    for name, wa in (("content", False), ("content x actions", True)):
        x_tr, x_te = design(tr_idx, wa), design(te_idx, wa)
        g = x_tr.T @ x_tr
        b = x_tr.T @ y_tr
        best = None
        for lam in (1e1, 1e2, 1e3, 1e4):
            reg = lam * np.eye(len(g))
            reg[-1, -1] = 0
            err = y_te - x_te @ np.linalg.solve(g + reg, b)
            l1 = float(np.abs(err).mean() / copy)
            mse = float((err**2).mean() / (y_te**2).mean())
            best = (l1, mse) if best is None or l1 < best[0] else best
        res[f"{name}/copy step{step}"] = round(best[0], 4)
        res[f"{name} MSE/copy step{step}"] = round(best[1], 4)
        print(step, name, "L1", round(best[0], 4), "MSE", round(best[1], 4), flush=True)
with open(sys.argv[2], "w") as fh:
    json.dump(res, fh, indent=1)
