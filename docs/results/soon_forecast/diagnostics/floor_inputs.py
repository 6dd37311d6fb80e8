"""Issue 30 diagnostic: what the copy-last floor's change map is given. The floor forecasts
present + change(predictor - present); if the predictor's own tokens sit far from the present
(it reproduces the present poorly), their difference is mostly its reproduction error and the
map must stay small. Per SOON step on held-out windows: mean |predictor - present|, mean
|target - present| (the change to forecast), mean |change(...)| (what the floor adds), and the
cosine between the predicted and the true change, per token.
Usage: python floor_inputs.py FLOORED_SOURCE HELD_OUT OUT.json [every]"""

import json
import sys

import torch
import torch.nn.functional as F
from held_out import model_and_batches

source, held, out = sys.argv[1:4]
every = int(sys.argv[4]) if len(sys.argv) > 4 else 10
model, batches = model_and_batches(source, held, every)
c = model.config.clip
hw = c.grid[1] * c.grid[2]
seen: dict[str, torch.Tensor] = {}
model.soon_floor.register_forward_hook(lambda m, args, out: seen.update(pred=args[0]))
sums: dict[str, torch.Tensor] = {}
n = 0
for samples in batches:
    video = torch.stack([s["video"] for s in samples])
    soon = model.encode(video)["soon"].float()
    clips = model.normalize(video)
    b, d = len(samples), soon.shape[-1]
    target = model.teacher_targets(clips)[:, model.soon_idx[0]].view(b, -1, hw, d)
    present = model.present_step(clips).view(b, 1, hw, d)
    pred = seen["pred"].float().view(b, -1, hw, d)
    added = soon.view(b, -1, hw, d) - present
    true_change, pred_change = target - present, pred - present
    parts = {
        "|predictor - present|": pred_change.abs().mean(dim=(2, 3)),
        "|target - present|": true_change.abs().mean(dim=(2, 3)),
        "|floor's change|": added.abs().mean(dim=(2, 3)),
        "|target - forecast|": (target - soon.view(b, -1, hw, d)).abs().mean(dim=(2, 3)),
        "cos(predicted change, true change)": F.cosine_similarity(
            pred_change, true_change, dim=-1
        ).mean(dim=2),
        "cos(floor's change, true change)": F.cosine_similarity(added, true_change, dim=-1).mean(
            dim=2
        ),
    }
    for k, v in parts.items():
        sums[k] = sums.get(k, 0) + v.sum(0)
    n += b
res = {k: [round(float(x), 4) for x in v / n] for k, v in sums.items()}
res |= {"source": source, "windows": n}
print(json.dumps(res, indent=1))
with open(out, "w") as fh:
    json.dump(res, fh, indent=1)
