"""Clips/s of one training sample's frames per video format and decoder (issue 19).

    python scripts/bench_decode.py OUT_DIR [--json PATH] [--seconds S]

Makes one short test video per format in OUT_DIR (reused when present):

- mp4_h264_small: H.264 .mp4, 128x64 at 4 fps, 60 s, x264 defaults with a fixed qp (make-clips);
- mov_h264_bdd: H.264 .mov, 640x360 at 30 fps, 20 s, keyframe every 30 frames, B-frames;
- mov_h264_bdd720: the same at BDD100K's own size, 1280x720 at 30 fps for 40 s, 4 Mbit/s;
- mp4_hevc_comma: HEVC (libx265, no B-frames, keyframe every 20 frames), 1164x874 at 20 fps,
  20 s, written raw and remuxed to .mp4 by the comma2k19 importer's `remux_hevc`;
- frames_jpeg: a `.frames` descriptor of 640x360 JPEGs at 12 fps, 20 s (Pillow reads it whatever
  the backend: the same number twice);

then, in this process with at most 2 CPUs, reads training samples (the default clip: 16 frames at
8 fps from a random start, `native_indices` as the dataset computes them) with each backend:

- open: the file is opened for every sample (it cycles over OPEN_READERS + 1 hard links of the
  file, so the reader cache never hits), as when a shuffled dataset of many videos comes back to
  a video only after many other samples: the case `auto` is decided on;
- warm: the reader stays open (one long video read over and over).

Each cell runs for `--seconds` after one warm-up read; `agree` is the mean absolute pixel
difference between decord's and PyAV's frames of the same samples (both read the same frames).
Per format it also times the index's probe: `probe_ms`, one file at a time, and `index_ms`, per
file when `VideoIndex` probes 300 hard links at once in threads and in processes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from fractions import Fraction
from pathlib import Path

import numpy as np

BACKENDS = ("decord", "pyav", "auto")
FORMATS = {  # name: (file, codec, width, height, fps, seconds)
    "mp4_h264_small": ("small.mp4", "libx264", 128, 64, 4, 60),
    "mov_h264_bdd": ("bdd.mov", "libx264", 640, 360, 30, 20),
    "mov_h264_bdd720": ("bdd720.mov", "libx264", 1280, 720, 30, 40),
    "mp4_hevc_comma": ("comma.mp4", "libx265", 1164, 874, 20, 20),
    "frames_jpeg": ("nusc.frames", "jpeg", 640, 360, 12, 20),
}
OPTIONS = {
    "mp4_h264_small": {"qp": "20", "threads": "1"},
    "mov_h264_bdd": {"crf": "23", "g": "30", "preset": "veryfast"},
    "mov_h264_bdd720": {
        "b": "4M",
        "maxrate": "5M",
        "bufsize": "8M",
        "g": "30",
        "preset": "veryfast",
    },
    "mp4_hevc_comma": {"x265-params": "keyint=20:min-keyint=20:bframes=0:log-level=error"},
}


def _image(k: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A road-like moving pattern with texture, so the encoders spend realistic bits."""
    x = np.arange(width)[None, :] + 3 * k
    y = np.arange(height)[:, None]
    base = 96 + 60 * np.sin(x / 23.0) * np.cos(y / 17.0 + k / 9.0) + 40 * (y / height)
    noise = rng.normal(0, 8, (height, width))
    gray = np.clip(base + noise, 0, 255).astype(np.uint8)
    return np.stack([gray, np.roll(gray, 5, axis=1), np.roll(gray, 9, axis=0)], axis=-1)


def make(name: str, out: Path) -> Path:
    """The test file of format `name` under `out` (written once)."""
    import av

    filename, codec, width, height, fps, seconds = FORMATS[name]
    path = out / filename
    if path.exists():
        return path
    rng = np.random.default_rng(0)
    frames = (_image(k, width, height, rng) for k in range(fps * seconds))
    if codec == "jpeg":
        from PIL import Image

        folder = out / "nusc_images"
        folder.mkdir(parents=True, exist_ok=True)
        names = []
        for k, image in enumerate(frames):
            Image.fromarray(image).save(folder / f"{k:05d}.jpg", quality=90)
            names.append(f"nusc_images/{k:05d}.jpg")
        times = [round(k / fps, 6) for k in range(len(names))]
        path.write_text(json.dumps({"version": 1, "fps": fps, "frames": names, "time": times}))
        return path
    raw = path.with_suffix(".hevc") if codec == "libx265" else path
    with av.open(str(raw), "w", format="hevc" if codec == "libx265" else None) as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = OPTIONS[name]
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    if codec == "libx265":
        from tritemporal.data.importers.comma2k19 import remux_hevc

        remux_hevc(raw, path, np.arange(fps * seconds) / fps, [])
        raw.unlink()
    return path


def _samples(path: Path, count: int, seed: int) -> list[np.ndarray]:
    """Native indices of `count` training samples from random starts (the default clip)."""
    from tritemporal.config import load_config
    from tritemporal.data.decode import probe_video
    from tritemporal.data.windows import WindowSpec, native_indices

    meta = probe_video(path)
    spec = WindowSpec.from_config(load_config(None, ["data.source=videos"]))
    rng = np.random.default_rng(seed)
    starts = rng.uniform(0, meta.duration - spec.span_s, count)
    return [native_indices(spec.frame_times(s), meta.fps, meta.frames) for s in starts]


def _links(path: Path, count: int, prefix: str = "link") -> list[Path]:
    """`count` hard links of `path` (distinct paths, one file: the reader cache never hits)."""
    links = []
    for k in range(count):
        link = path.with_name(f"{prefix}{k}_{path.name}")
        if path.suffix == ".frames":  # a descriptor names its images relative to its folder
            if not link.exists():
                link.write_text(path.read_text())
        elif not link.exists():
            os.link(path, link)
        links.append(link)
    return links


def measure(path: Path, backend: str, mode: str, seconds: float) -> dict:
    """Samples per second of `backend` on `path`, reopening the file per sample or not."""
    from tritemporal.data.decode import OPEN_READERS, read_frames

    files = _links(path, OPEN_READERS + 1) if mode == "open" else [path]
    samples = _samples(path, 10_000, seed=1)
    read_frames(files[0], samples[0], backend)  # warm-up: imports, page cache
    begin, clips = time.perf_counter(), 0
    while time.perf_counter() - begin < seconds or clips < 5:
        read_frames(files[clips % len(files)], samples[clips + 1], backend)
        clips += 1
    elapsed = time.perf_counter() - begin
    return {"clips": clips, "seconds": round(elapsed, 2), "clips_per_s": round(clips / elapsed, 2)}


def probe_ms(path: Path, count: int = 10) -> float:
    """Milliseconds `probe_video` (what the index runs per new file) takes on `path`."""
    from tritemporal.data.decode import probe_video

    probe_video(path)
    begin = time.perf_counter()
    for _ in range(count):
        probe_video(path)
    return round((time.perf_counter() - begin) / count * 1e3, 2)


def index_ms(path: Path, copies: int = 300) -> dict[str, float]:
    """Milliseconds a file when the index probes `copies` links of `path` at once, by mode."""
    from tritemporal.data.video_index import INDEX_FILE, VideoIndex

    files = {link.name: link for link in _links(path, copies, prefix="index")}
    out = {}
    for mode, process_min in (("threads", 1 << 62), ("processes", 0)):
        (path.parent / INDEX_FILE).unlink(missing_ok=True)
        index = VideoIndex(path.parent, process_min=process_min)
        begin = time.perf_counter()
        index.lookup(files)
        out[mode] = round((time.perf_counter() - begin) / copies * 1e3, 2)
    (path.parent / INDEX_FILE).unlink(missing_ok=True)
    return out


def agreement(path: Path) -> float:
    """Mean absolute difference of decord's and PyAV's frames over a few samples."""
    from tritemporal.data.decode import read_frames

    diffs = []
    for indices in _samples(path, 4, seed=2):
        a, b = (read_frames(path, indices, backend).float() for backend in ("decord", "pyav"))
        diffs.append(float((a - b).abs().mean()))
    return round(max(diffs), 3)


def main() -> None:
    """Make the files, measure every format x backend x mode, print (and save) the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="folder for the test files")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--seconds", type=float, default=5.0, help="per format, backend, mode")
    args = parser.parse_args()
    if len(os.sched_getaffinity(0)) > 2:  # FFmpeg sizes its thread pools from the affinity
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])
    import av
    import decord

    from tritemporal.data.decode import auto_backend, probe_video

    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()[0]
    results = {}
    for name in FORMATS:
        path = make(name, args.out)
        meta = probe_video(path)
        cells = {
            backend: {mode: measure(path, backend, mode, args.seconds) for mode in ("open", "warm")}
            for backend in BACKENDS
        }
        results[name] = {
            "file": path.name,
            "codec": meta.codec,
            "size": [meta.width, meta.height],
            "fps": meta.fps,
            "frames": meta.frames,
            "auto_picks": "pillow" if path.suffix == ".frames" else auto_backend(path, meta),
            "probe_ms": probe_ms(path),
            "index_ms": index_ms(path),
            "agree_mean_abs_diff": agreement(path),
            "clips_per_s": cells,
        }
        print(name, json.dumps(results[name]["clips_per_s"]), flush=True)
    report = {
        "sample": "16 frames at 8 fps from a random start (the default clip), uint8 RGB",
        "cpus": len(os.sched_getaffinity(0)),
        "load_before": load,
        "versions": {"av": av.__version__, "decord": decord.__version__},
        "formats": results,
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
