"""Tiny datasets in the exact on-disk formats of BDD100K and comma2k19, with their quirks, for the
importer tests and docs/data.md's worked example (`python -m tests.dataset_fixtures demo`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np

START_MS = 1490222251368  # a real BDD100K startTime (epoch ms)
ROUTE = "b0c9d2329ad1606b|2018-08-02--08-34-47"  # a real comma2k19 route (literal '|')
BOOT = 46408.547  # comma2k19 frame_times start on the device's boot clock, not at 0


def pattern_frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """Frames that differ: a moving bar and a rising green level."""
    out = []
    for i in range(n):
        image = np.zeros((h, w, 3), np.uint8)
        image[:, (3 * i) % w] = 255
        image[..., 1] = (7 * i) % 256
        out.append(image)
    return out


def encode(path: Path, frames: list[np.ndarray], codec: str, fmt: str, fps: int = 30,
            options: dict | None = None) -> None:  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w", format=fmt) as out:
        stream = out.add_stream(codec, rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = options or {}
        for image in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())


# ---------------------------------------------------------------------------------- BDD100K
def bdd_info(speeds: list[float], courses: list[float] | None = None, **extra) -> dict:
    """An info JSON: one fix per second from 0.4 s before startTime (as real files start)."""
    courses = courses or [90.0] * len(speeds)
    first = START_MS - 400
    locations = [
        {"timestamp": first + 1000 * i, "latitude": 40.7041 + 1e-5 * i,
         "longitude": -73.7983, "speed": v, "course": c, "accuracy": 10.0}
        for i, (v, c) in enumerate(zip(speeds, courses, strict=True))
    ]  # fmt: skip
    imu = [{"x": 0.99, "y": 0.0, "z": 0.02, "timestamp": START_MS + 20 * i} for i in range(10)]
    info = {
        "rideID": "06d501fdd8a845f58039cf6318aa34b9", "filename": "a9ffc960-33eb.mov",
        "timelapse": False, "startTime": START_MS, "endTime": START_MS + 1000 * len(speeds),
        "locations": locations, "accelerometer": imu, "gyro": imu,
    }  # fmt: skip
    info.update(extra)
    return info


def bdd_video(root: Path, name: str, info: dict | str | None, split: str = "train",
         video: bool = True, seconds: int = 2) -> None:  # fmt: skip
    if video:
        path = root / "videos" / "100k" / split / f"{name}.mov"
        encode(path, pattern_frames(4 * seconds), "libx264", "mov", fps=4)
    if info is not None:
        path = root / "info" / "100k" / split / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(info if isinstance(info, str) else json.dumps(info))


# --- comma2k19
def npy(path: Path, array: np.ndarray) -> None:
    """comma2k19 stores `t` and `value` as .npy files without the extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        np.save(handle, array)


def comma_segment(
    root: Path, segment: int, frames: int = 60, bframes: bool = False, imu: bool = True,
    frame_times: np.ndarray | None = None,
) -> Path:  # fmt: skip
    """One segment: 20 fps with jittered frame times; 20 m/s braking to 14 m/s at 1-2 s; a right
    turn (gyro down axis +0.8 rad/s, steering wheel -90 deg) at 1.5-2.7 s."""
    seg = root / "Chunk_1" / ROUTE / str(segment)
    x265 = f"log-level=error:bframes={3 if bframes else 0}"
    encode(seg / "video.hevc", pattern_frames(frames), "libx265", "hevc", 20, {"x265-params": x265})
    rng = np.random.default_rng(segment)
    if frame_times is None:
        frame_times = BOOT + np.arange(frames) * 0.05 + rng.uniform(-1e-3, 1e-3, frames)
    npy(seg / "global_pose" / "frame_times", frame_times)
    t = BOOT + 0.04 + np.arange(0, frames / 20, 1 / 83)
    rel = t - BOOT
    speed = np.clip(20 - 6 * (rel - 1.0), 14, 20)
    npy(seg / "processed_log/CAN/speed/t", t)
    npy(seg / "processed_log/CAN/speed/value", speed[:, None])  # (N, 1) as in the dataset
    turning = (rel > 1.5) & (rel < 2.7)
    npy(seg / "processed_log/CAN/steering_angle/t", t)
    npy(seg / "processed_log/CAN/steering_angle/value", np.where(turning, -90.0, 0.0))
    if imu:
        ti = BOOT + np.arange(0, frames / 20, 1 / 104)
        gyro = np.zeros((len(ti), 3))
        gyro[(ti - BOOT > 1.5) & (ti - BOOT < 2.7), 2] = 0.8
        npy(seg / "processed_log/IMU/gyro/t", ti)
        npy(seg / "processed_log/IMU/gyro/value", gyro)
    return seg


def demo_drive(speeds: list[float], fps: int = 8, h: int = 64, w: int = 128) -> list[np.ndarray]:
    """Frames of a road whose lane marks scroll with the ego speed (one value per second)."""
    out, position = [], 0.0
    for i in range(len(speeds) * fps):
        position += speeds[i // fps] / fps * 2  # 2 px per metre
        image = np.full((h, w, 3), 90, np.uint8)
        for mark in range(-2, w // 16 + 2):
            x = int(mark * 16 - position % 16)
            image[h // 2 - 2 : h // 2 + 2, max(0, x) : max(0, x + 8)] = 255
        out.append(image)
    return out


def write_demo(out: Path, videos: int = 12, seconds: int = 16) -> None:
    """BDD100K-format train / val splits (every other video brakes) and two comma2k19 segments."""
    rng = np.random.default_rng(0)
    for i in range(videos):
        split = "val" if i % 3 == 2 else "train"
        cruise = float(rng.uniform(10, 16))
        speeds = [cruise] * seconds
        if i % 2:
            at = int(rng.integers(5, seconds - 5))
            speeds[at:] = [max(2.0, cruise - 3.0 * k) for k in range(1, seconds - at + 1)]
        name = f"{i:08x}-demo{i:04d}"
        encode(out / "bdd100k" / "videos" / "100k" / split / f"{name}.mov",
               demo_drive(speeds), "libx264", "mov", fps=8)  # fmt: skip
        info = out / "bdd100k" / "info" / "100k" / split / f"{name}.json"
        info.parent.mkdir(parents=True, exist_ok=True)
        info.write_text(json.dumps(bdd_info(speeds)))
    for segment in (3, 4):
        comma_segment(out / "comma2k19", segment, frames=120, imu=segment == 3)


if __name__ == "__main__":
    write_demo(Path(sys.argv[1] if len(sys.argv) > 1 else "demo"))
    print(f"wrote {sys.argv[1] if len(sys.argv) > 1 else 'demo'}/bdd100k and /comma2k19")
