"""Probe candidate EVENTUALLY targets for the eventual maneuver (issue 28: probe the target first).

Windows of the first N training videos; linear probe (z-scored logistic, balanced) with 5 group
folds over videos; balanced accuracy, 200 bootstrap resamples over videos."""
import json, sys, time
import numpy as np, torch
from tritemporal.config import load_config
from tritemporal.data.ego_motion import future_motion
from tritemporal.data.windows import WindowSpec
from tritemporal.eval.report import eval_dataset, decoded_batches, random_init_copy
from tritemporal.eval.probes import linear_probe_predictions
from tritemporal.eval.compare import video_resamples, bootstrap_interval
from tritemporal.eval.metrics import classification_metrics
from tritemporal.model import TriTemporalModel

data, n_videos, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
base = TriTemporalModel.from_pretrained("vit-tiny-drive")
models = {"base": base, "random": random_init_copy(base, 0)}
cfg = base.config
ds = eval_dataset(cfg, data)
keep = np.flatnonzero(ds.video_ids < n_videos)
n = len(keep)
spec = WindowSpec.from_config(cfg)
names = list(ds.label_names)
feats = {}
labels, groups = [], []
g = cfg.clip.grid
now_steps, soon_steps, ev_steps = cfg.clip.slices
hw = g[1] * g[2]
t = time.time()
with torch.no_grad():
    for start in range(0, n, 32):
        idx = keep[start:start + 32]
        samples = [ds[int(i)] for i in idx]
        video = torch.stack([s["video"] for s in samples])
        labels += [int(s["label"]) for s in samples]
        groups += [int(ds.video_ids[i]) for i in idx]
        for name, m in models.items():
            clips = m.normalize(video)
            tok = m.teacher_targets(clips)  # (B, N, D)
            b, _, d = tok.shape
            alone = m.present_targets(clips).view(b, now_steps, hw, d)[:, -1]
            tok = tok.view(b, g[0], hw, d)
            last = tok[:, now_steps - 1]
            ev = tok[:, now_steps + soon_steps:].mean(1)
            fut = tok[:, now_steps:].mean(1)
            parts = {
                "pooled_change": (ev - last).mean(1),
                "pooled_window": ev.mean(1),
                "slot_change": (ev - last).flatten(1),
                "slot_future_change": (fut - last).flatten(1),
                "slot_change_norm": (ev - last).norm(dim=-1),  # (B, hw): how much each slot moved
                "pooled_now_leak": (last - alone).mean(1),  # what the future adds to the present
                "slot_now_leak": (last - alone).flatten(1),
            }
            for k, v in parts.items():
                feats.setdefault(f"{name}/{k}", []).append(v.numpy())
        # pixel row profile change: EV frames minus last NOW frame, mean over width
        vid = video.float() / 255
        prof_last = vid[:, :, now_steps * 2 - 1].mean(-1)  # (B, C, H)
        prof_ev = vid[:, :, -cfg.clip.eventually_frames:].mean(2).mean(-1)
        feats.setdefault("pixels/row_profile_change", []).append((prof_ev - prof_last).flatten(1).numpy())
        print(f"{start + len(idx)}/{n} windows {time.time() - t:.0f} s", flush=True)
# ego vector
ego = []
for i in keep:
    v = ds._videos[ds._video_of[i]]
    start_s = float(ds.window_starts[i])
    ego.append(future_motion(v.annotation, spec, np.array([start_s]))[0].numpy())
feats["ego/future_motion"] = [np.stack(ego)]
y = np.array(labels); grp = np.array(groups)
np.savez(out.replace(".json", ".npz"), y=y, groups=grp, **{k: np.concatenate(v) for k, v in feats.items()})
from sklearn.decomposition import PCA
res = video_resamples(grp, 200, 0)
results = {}
print("labels", {names[c]: int((y == c).sum()) for c in np.unique(y)})
for key, parts in feats.items():
    x = np.concatenate(parts).astype(np.float32)
    if x.shape[1] > 256:  # PCA (unsupervised, all windows) keeps the probe fast
        x = PCA(256, random_state=0).fit_transform(x)
    t = time.time()
    pred, _ = linear_probe_predictions(x, y, names, 5, 0, grp)
    stat = lambda ix: classification_metrics(y[ix], pred[ix], names)["balanced_accuracy"]
    value = classification_metrics(y, pred, names)["balanced_accuracy"]
    low, high = bootstrap_interval(stat, res)
    results[key] = {"value": value, "low": low, "high": high, "dims": x.shape[1]}
    print(f"{key:40s} {value:.3f} [{low:.3f}, {high:.3f}] dims {x.shape[1]} ({time.time() - t:.0f} s)", flush=True)
json.dump({"windows": int(n), "videos": int(len(np.unique(grp))), "results": results}, open(out, "w"), indent=1)
