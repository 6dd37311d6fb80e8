"""`tritemporal bench --render`: the clip renderers' speed on one core, apart from the simulator.

A highway video is simulated (the ego holding its lane) and each state is rendered by the chosen
camera; the renderer's time and the simulator's time are summed separately, so the report tells
how fast frames are drawn (`render_fps`, the figure of merit of `data/front_render.py`) and how
much of clip generation is left to highway-env itself (`simulate_fps`).
"""

from __future__ import annotations

import platform
import time
from typing import Any

from tritemporal.data.highway import CAMERAS, FrontSettings, FrontView, _Camera, highway_gym


def bench_render(
    camera: str = "front",
    image_size: tuple[int, int] = (128, 256),
    frames: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Frames per second of `camera`'s renderer and of the simulator, on one core (JSON-ready)."""
    if camera not in CAMERAS:
        raise ValueError(f"camera (--render) must be one of {', '.join(CAMERAS)}, got {camera!r}")
    if frames < 1:
        raise ValueError(f"frames (--frames) must be >= 1, got {frames}")
    fps = 4.0
    render_s = simulate_s = 0.0
    with highway_gym("highway", fps, image_size, frames / fps + 1) as env:
        env.reset(seed=seed)
        u = env.unwrapped
        view = _view(camera, u, image_size, seed)
        idle = u.action_type.actions_indexes["IDLE"]
        for _ in range(frames):
            started = time.perf_counter()
            view.render()
            rendered = time.perf_counter()
            ended = any(env.step(idle)[2:4])
            simulate_s += time.perf_counter() - rendered
            render_s += rendered - started
            if ended:  # a crash or the episode's end: go on from a fresh episode
                seed += 1
                env.reset(seed=seed)
                view = _view(camera, u, image_size, seed)
    return dict(
        camera=camera, image_size=list(image_size), frames=frames,
        render_fps=round(frames / render_s, 1), simulate_fps=round(frames / simulate_s, 1),
        render_ms=round(1000 * render_s / frames, 3), processor=platform.processor() or "unknown",
        cores=1,
    )  # fmt: skip


def _view(camera: str, env: Any, image_size: tuple[int, int], seed: int) -> Any:
    """The camera over `env`'s present episode (the front one with a video's default settings)."""
    if camera == "front":
        return FrontView(env, image_size, *FrontSettings().for_video(seed), seed=seed)
    return _Camera(env, "highway", image_size)
