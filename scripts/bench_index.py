"""Start-up cost of the video index and of `VideoClips` on N small generated videos (issue 19).

    python scripts/bench_index.py N OUT_DIR [--json PATH]

Writes N tiny H.264 videos (16 frames of 64x64 at 4 fps) to OUT_DIR/videos/<k>/ and one schema-3
annotation each to OUT_DIR/annotations/ (auto events and six ego series of 40 samples, as a
BDD100K import writes them), reusing files already there. Then it times each phase in a fresh
Python process (so nothing is warm in memory but the OS page cache):

- build_serial / build_threads / build_fork / build_spawn: the first index build (every video
  probed) in one thread, in `PROBE_THREADS` threads, and in one process per core started by fork
  or by spawn (`video_index.PROCESS_START`); build: the default choice;
- reload: the index loaded and every video looked up with nothing to probe;
- clips_cold / clips_warm: the whole `VideoClips` construction without / with the index, split
  into `VideoClips.build_seconds` (find, index, annotations, windows);
- incremental: `VideoClips` after 1% of the videos were touched (re-probed) and 1% removed.

The JSON gives per-phase seconds and `per_100k`: each phase scaled linearly to 100k videos (every
phase is one pass over the files; the Python start-up, `import_s`, is not scaled).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

FRAMES, FPS, SIZE = 16, 4, 64
PER_FOLDER = 1000  # videos per sub-folder (as BDD100K's split folders, but smaller)
SAMPLES = 40  # ego samples per annotation (BDD100K: 1 Hz GPS over 40 s)
CONFIG = ["data.source=videos", "data.fps=8", "data.stride_s=0.5"]  # 2 s windows, 5 per video


def _paths(root: Path, k: int) -> tuple[Path, Path]:
    name = f"{k // PER_FOLDER:03d}/clip_{k:06d}"
    return root / "videos" / f"{name}.mp4", root / "annotations" / f"{name}.json"


def _make(args: tuple[str, int]) -> None:
    import av
    import numpy as np

    root, k = Path(args[0]), args[1]
    video, note = _paths(root, k)
    if not video.is_file():
        video.parent.mkdir(parents=True, exist_ok=True)
        tmp = video.with_name(f".{video.name}")
        rng = np.random.default_rng(k)
        with av.open(str(tmp), "w", format="mp4") as out:
            stream = out.add_stream("libx264", rate=FPS, options={"qp": "30", "g": "8"})
            stream.width = stream.height = SIZE
            stream.pix_fmt, stream.thread_count = "yuv420p", 1
            base = rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
            for i in range(FRAMES):
                image = np.roll(base, 2 * i, axis=1)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
            out.mux(stream.encode())
        os.replace(tmp, video)
    if not note.is_file():
        note.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(SAMPLES) * (FRAMES / FPS / SAMPLES)
        speed = 12 + np.sin(t + k)
        ego = {
            "time": t,
            "speed": speed,
            "heading": 0.01 * np.cos(t),
            "acceleration": np.gradient(speed, t),
            "latitude": 37.7 + 1e-5 * t,
            "longitude": -122.4 + 1e-5 * t,
        }
        data = {
            "schema_version": 3,
            "events": [{"maneuver": "brake", "start": 1.0, "end": 2.5, "source": "auto"}],
            "ego": {name: [round(float(v), 6) for v in values] for name, values in ego.items()},
            "source": {"generator": "bench_index", "seed": k},
        }
        note.write_text(json.dumps(data, indent=1))


def generate(root: Path, n: int) -> float:
    """Write the videos and annotations not yet there; seconds taken."""
    begin = time.perf_counter()
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        list(pool.map(_make, [(str(root), k) for k in range(n)], chunksize=64))
    return time.perf_counter() - begin


def _config(root: Path):
    from tritemporal.config import load_config

    return load_config(None, [*CONFIG, f"data.root={root}"])


def run_phase(name: str, root: Path) -> dict:
    """One phase, in this process (the parent starts a fresh process per phase)."""
    from tritemporal.data import video_index
    from tritemporal.data.video_index import INDEX_FILE, VideoIndex
    from tritemporal.data.videos import VideoClips, find_videos

    out: dict = {}
    if name.startswith("build"):
        (root / INDEX_FILE).unlink(missing_ok=True)
        begin = time.perf_counter()
        files = {key: path for key, path, _ in find_videos(root, None)}
        out["find_s"] = time.perf_counter() - begin
        forced = {
            "build_serial": {"threads": 1, "process_min": 1 << 62},
            "build_threads": {"process_min": 1 << 62},
            "build_fork": {"process_min": 0},
            "build_spawn": {"process_min": 0},
        }
        if name in ("build_fork", "build_spawn"):
            video_index.PROCESS_START = name.removeprefix("build_")
        index = VideoIndex(root, **forced.get(name, {}))
        begin = time.perf_counter()
        index.lookup(files)
        out["index_s"] = time.perf_counter() - begin
        out["probed"], out["mode"] = index.probed, index.mode
    elif name == "reload":
        files = {key: path for key, path, _ in find_videos(root, None)}
        begin = time.perf_counter()
        index = VideoIndex(root)
        out["load_s"] = time.perf_counter() - begin
        index.lookup(files)
        out["index_s"] = time.perf_counter() - begin
        out["probed"] = index.probed
    else:
        if name == "clips_cold":
            (root / INDEX_FILE).unlink(missing_ok=True)
        begin = time.perf_counter()
        data = VideoClips(_config(root))
        out["total_s"] = time.perf_counter() - begin
        out |= {f"{k}_s": v for k, v in data.build_seconds.items()}
        out["videos_used"], out["samples"] = data.summary.videos_used, len(data)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def _fresh(name: str, root: Path) -> dict:
    """Run one phase in a new interpreter; its result plus the interpreter's import time."""
    begin = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--phase", name, str(root)],
        check=True,
        capture_output=True,
        text=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = round(time.perf_counter() - begin, 3)
    print(name, result, flush=True)
    return result


def _touch(root: Path, n: int) -> tuple[int, int]:
    """Touch 1% of the videos (new mtime) and move another 1% away; counts of each."""
    step = 100
    touched = removed = 0
    for k in range(0, n, step):
        video, _ = _paths(root, k)
        stat = video.stat()
        os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        touched += 1
    for k in range(step // 2, n, step):
        video = _paths(root, k)[0]
        spare = root / "removed" / video.relative_to(root)
        spare.parent.mkdir(parents=True, exist_ok=True)
        os.replace(video, spare)
        removed += 1
    return touched, removed


def _restore(root: Path) -> None:
    spare = root / "removed"
    if spare.is_dir():
        for path in spare.rglob("*.mp4"):
            os.replace(path, root / path.relative_to(spare))
        shutil.rmtree(spare)


def main() -> None:
    """Generate, time every phase in a fresh process, print and optionally save the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("n", type=int, nargs="?", help="videos to generate and index")
    parser.add_argument("out", type=Path, help="folder for videos/, annotations/ and the index")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.out)))
        return
    load = os.getloadavg()[0]
    _restore(args.out)
    generate_s = generate(args.out, args.n)
    begin = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tritemporal.data.videos"], check=True)
    import_s = time.perf_counter() - begin
    phases = {}
    builds = ("build_serial", "build_threads", "build_fork", "build_spawn", "build")
    for name in (*builds, "reload"):
        phases[name] = _fresh(name, args.out)
    phases["clips_cold"] = _fresh("clips_cold", args.out)
    phases["clips_warm"] = _fresh("clips_warm", args.out)
    touched, removed = _touch(args.out, args.n)
    phases["incremental"] = _fresh("incremental", args.out) | {
        "touched": touched,
        "removed": removed,
    }
    _restore(args.out)
    scale = 100_000 / args.n
    per_100k = {
        name: {
            k: round(v * scale, 1)
            for k, v in result.items()
            if k.endswith("_s") and k != "process_s"
        }
        for name, result in phases.items()
    }
    report = {
        "videos": args.n,
        "video": f"H.264 {SIZE}x{SIZE}, {FRAMES} frames at {FPS} fps, annotation {SAMPLES} samples",
        "config": CONFIG,
        "cpu_count": os.cpu_count(),
        "load_before": load,
        "generate_s": round(generate_s, 1),
        "import_s": round(import_s, 2),
        "phases": phases,
        "per_100k": per_100k,
        "extrapolation": "linear in the number of videos (seconds x 100000 / videos); "
        "process_s (the whole fresh process, interpreter start-up included) is not scaled",
    }
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
