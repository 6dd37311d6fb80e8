"""Issue 30 diagnostic: the teacher's sensitivity to sensor noise, against copy-last's SOON error.
The present (teacher over the NOW frames) of each held-out window, encoded again with fresh
Gaussian pixel noise of the corpus's std (1.5 of 255) added to every frame: the L1 between the
two is a floor no forecast of a noisy future frame can go under. Also with the NOW frames shifted
by one frame (the present 0.25 s earlier): what a quarter second of motion changes.
Usage: noise_floor.py SOURCE HELD_OUT OUT.json [every] [noise_std]"""

import json
import sys

import torch
from held_out import model_and_batches

source, held, out = sys.argv[1:4]
every = int(sys.argv[4]) if len(sys.argv) > 4 else 10
std = float(sys.argv[5]) if len(sys.argv) > 5 else 1.5
model, batches = model_and_batches(source, held, every)
c = model.config.clip
hw = c.grid[1] * c.grid[2]
gen = torch.Generator().manual_seed(0)


sums = {"noise": 0.0, "copy_step0": 0.0, "copy_step1": 0.0}
n = 0
for samples in batches:
    video = torch.stack([s["video"] for s in samples])  # uint8: normalize reads 0-255
    clean = model.present_step(model.normalize(video))
    noise = torch.randn(video.shape, generator=gen) * std
    noisy_video = (video.float() + noise).round().clamp(0, 255).to(torch.uint8)
    noisy = model.present_step(model.normalize(noisy_video))
    whole = model.teacher_targets(model.normalize(video))[:, model.soon_idx[0]]
    b, d = len(samples), clean.shape[-1]
    whole = whole.view(b, -1, hw, d)
    sums["noise"] += float((clean - noisy).abs().mean(dim=(1, 2)).sum())
    for k in range(whole.shape[1]):
        sums[f"copy_step{k}"] += float((whole[:, k] - clean).abs().mean(dim=(1, 2)).sum())
    n += b
res = {k: round(v / n, 5) for k, v in sums.items()} | {"windows": n, "noise_std": std}
res["noise/copy_step0"] = round(res["noise"] / res["copy_step0"], 4)
print(json.dumps(res, indent=1))
with open(out, "w") as fh:
    json.dump(res, fh, indent=1)
