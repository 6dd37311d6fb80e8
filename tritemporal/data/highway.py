"""Driving clips from highway-env: top-down H.264 videos plus annotations (schema 2: maneuver
events, ego series and per-frame scene facts, see `scene_facts`).

Why the policy only sees what the camera sees: the ego follows rules that react ONLY to vehicles
inside the rendered frame, and the camera shows the road well beyond the reaction distance
(highway: 48 m visible ahead versus a 25-36 m reaction gap). Every maneuver therefore has a
visible cause in the frames before it, so the EVENTUALLY outcome is predictable in principle
from the NOW pixels; reacting to off-screen traffic would turn the labels into noise. Like a
driver, the ego also indicates for `SIGNAL_S` before a lane change (an amber mark at its front
corner on that side, kept on until it has settled in the new lane). Blocked behind a slower car,
it keeps indicating while it waits for a gap on that side, and drops the indicator once it is no
longer blocked.

Labels come from simulator truth: lane changes from `lane_index` (command until settled in the
target lane, verified), brake/yield/stop from the speed series, turns from the intersection lane
the ego drives. A video whose ego crashes ends at the frame before the crash and is kept when it
lasts `MIN_SECONDS` (`source.crashed` says so); shorter ones are re-simulated with the env seed
moved by `RETRY_STRIDE`. Merge, roundabout and intersection videos end at the end of the road,
so they may be shorter than `seconds`.

A corpus may mix scenarios (`scenario_plan` fixes each video index's scenario) and be made by
several processes: every video is simulated in a fresh env whose seed depends only on the seed
and the video's index, so the files are the same whatever the number of workers.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any, get_args

import numpy as np

from tritemporal.config import HighwayCamera, HighwayScenario
from tritemporal.data.annotations import (
    SCENE_BOX,
    SCENE_LANES,
    SCENE_LEADER,
    Event,
    write_annotation,
)
from tritemporal.data.front_camera import CameraGeometry
from tritemporal.data.front_render import Style
from tritemporal.data.highway_front import FrontSettings, FrontView
from tritemporal.files import atomic_path
from tritemporal.runtime import workers_ignore_ctrl_c

# data.highway.scenario -> highway-env id; the names are defined once, as config.HighwayScenario
SCENARIOS: dict[str, str] = {name: f"{name}-v0" for name in get_args(HighwayScenario)}
STRAIGHT = ("highway", "merge")  # road along x: ego at 1/4 width, camera locked on the road
VIEW_AHEAD, VIEW_SPAN = 48.0, 64.0  # m visible ahead (straight) / across (ego-centred scenes)
REACT, REACT_MAX = 25.0, 36.0  # m bumper gap (+1 s of closing speed) within which leaders count
GAP_AHEAD, GAP_BEHIND = 20.0, 10.0  # m of free target lane (+2 s / 1.5 s of closing speed)
LANE_HALF = 3.0  # m: |dy| below which a vehicle occupies a lane (half lane + half car)
LANE_CHANGE_MAX, KEEP_RIGHT_AFTER = 4.0, 2.0  # s
BRAKE_DROP, STOP_SPEED = 2.5, 1.0  # m/s
MIN_SECONDS, RETRY_STRIDE, MAX_ATTEMPTS = 5.0, 100_000, 5
RENDER_SCALE = 2  # render at 2x and box-downsample: anti-aliased small frames
POLICY = "visible-rules-v3-signal-3s"  # recorded per clip; part of the clip cache key
POLICY_FRONT = "front-rules-v1-pass-left"  # the front camera's (see `highway_front`)
CAMERAS = get_args(HighwayCamera)
# s the ego indicates before a lane change (3-5 s in driving handbooks). It covers the quickstart's
# SOON + gap + EVENTUALLY (1 + 1 + 1 s), so a lane change that overlaps an EVENTUALLY window was
# already announced in its NOW window: the label has a visible cause.
SIGNAL_S = 3.0
SIGNAL_COLOR = (255, 176, 0)  # amber, drawn at the ego's front corner on the side it will take
TRAFFIC_SPEEDS = (18.0, 26.0)  # m/s, highway traffic target speeds
CRUISE = {"roundabout": 10.0, "intersection": 9.0}  # m/s; highway/merge draw 24, 26 or 28
_LANE_CHANGE = {True: "lane_change_left", False: "lane_change_right"}  # keyed by "lane id fell"
# frame index -> the ego's (steering rad, acceleration m/s^2) for that frame, or None (`_simulate`)
Control = Callable[[int], tuple[float, float] | None]


def _whole(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value  # intersection-v0 needs ints


def _env_config(
    scenario: str, fps: float, image_size: tuple[int, int], seconds: float, zoom: float = 1.0
) -> dict:
    """highway-env's config for one video; `zoom` > 1 shows the road larger (less of it)."""
    height, width = image_size
    first = max(1, round(16 / fps))  # ~16 Hz physics, whole sub-steps, integer Hz if possible
    sub = [k for k in range(first, first + 8) if float(fps * k).is_integer()] or [first]
    top = {"roundabout": 16.0, "intersection": 9.0}.get(scenario, 30.0)
    config: dict[str, Any] = {
        "observation": {"type": "AttributesObservation", "attributes": ["time"]},  # cheap
        "action": {
            "type": "DiscreteMetaAction",
            "target_speeds": [float(v) for v in np.linspace(0, top, round(top / 2) + 1)],
            "lateral": scenario != "intersection",
        },
        "policy_frequency": _whole(fps),
        "simulation_frequency": _whole(fps * sub[0]),
        "duration": seconds + 5,
        "screen_width": width * RENDER_SCALE,
        "screen_height": height * RENDER_SCALE,
        "scaling": RENDER_SCALE
        * zoom
        * (0.75 * width / VIEW_AHEAD if scenario in STRAIGHT else width / VIEW_SPAN),
        "centering_position": [0.25 if scenario in STRAIGHT else 0.5, 0.5],
        "offscreen_rendering": True,
    }
    if scenario == "highway":
        config.update(lanes_count=4, vehicles_count=20, vehicles_density=1.0)
    return config


class _Camera:
    """The world rectangle the rendered frame shows (mirrors highway-env's WorldSurface).

    The front camera (`highway_front.FrontView`) has the same interface: `visible` (what the frame
    shows), `sees` (what the ego's rules react to), `lane_in_view`, `counts` (what the lane-state
    facts count) and `render`."""

    prefer_left = False  # the side of a lane change is drawn at random and shown by the indicator

    def __init__(self, env: Any, scenario: str, image_size: tuple[int, int]) -> None:
        self.env, (self.height, self.width) = env, image_size
        self.scaling = env.config["scaling"] / RENDER_SCALE
        self.cx = env.config["centering_position"][0]
        self.road_y = None  # straight roads: lock y on the road so lane changes show as motion
        if scenario in STRAIGHT:
            lanes = env.road.network.graph[env.vehicle.lane_index[0]][env.vehicle.lane_index[1]]
            self.road_y = float(np.mean([lane.position(0.0, 0.0)[1] for lane in lanes]))

    def centre_y(self) -> float:
        return float(self.env.vehicle.position[1]) if self.road_y is None else self.road_y

    def visible(self, pos: np.ndarray, margin_x: float = 2.5, margin_y: float = 1.0) -> bool:
        dx, dy = pos[0] - self.env.vehicle.position[0], pos[1] - self.centre_y()
        span_x, half_y = self.width / self.scaling, self.height / self.scaling / 2
        ahead = (1 - self.cx) * span_x - margin_x
        return -self.cx * span_x + margin_x <= dx <= ahead and abs(dy) <= half_y - margin_y

    def sees(self, pos: np.ndarray) -> bool:
        """What the ego's rules may react to: exactly what the frame shows."""
        return self.visible(pos)

    def lane_in_view(self, lane: Any, s: float) -> bool:
        """Whether `lane`'s centre at station `s` (beside the ego) is in the frame."""
        return self.visible(lane.position(s, 0.0), 0.0, 2.0)

    counts = None  # lane-state facts count every vehicle: the frame shows the ego's surroundings

    def render(self, signal: int = 0) -> np.ndarray:
        """The frame; `signal` -1 / +1 draws the ego's left / right indicator."""
        env = self.env
        if env.viewer is None:
            env.render()  # creates the viewer
        cy = 0.5 + (env.vehicle.position[1] - self.centre_y()) * self.scaling / self.height
        env.viewer.sim_surface.centering_position = [self.cx, float(cy)]
        frame = env.render().astype(np.float32)
        frame = frame.reshape(self.height, RENDER_SCALE, self.width, RENDER_SCALE, 3)
        frame = np.round(frame.mean(axis=(1, 3))).astype(np.uint8)
        if signal:
            self._indicator(frame, signal)
        return frame

    def _indicator(self, frame: np.ndarray, side: int) -> None:
        """Amber 4x2 mark at the ego's front corner: above it for left (-1), below for right (+1).

        It sits on even rows and columns so that H.264's 2x2 chroma blocks keep it amber."""
        ego = self.env.vehicle
        x, y = self.pixel(ego.position)
        half_w, half_l = ego.WIDTH / 2 * self.scaling, ego.LENGTH / 2 * self.scaling
        top = y - half_w - 2 if side < 0 else y + half_w
        row, col = 2 * math.floor(top / 2 + 0.5), 2 * math.floor((x + half_l - 4) / 2 + 0.5)
        rows = np.arange(row, row + 2)
        cols = np.arange(col, col + 4)
        rows, cols = (
            rows[(rows >= 0) & (rows < self.height)],
            cols[(cols >= 0) & (cols < self.width)],
        )
        frame[np.ix_(rows, cols)] = SIGNAL_COLOR

    def pixel(self, pos: np.ndarray) -> tuple[float, float]:
        """(column, row) of a world position in the output frame (straight roads)."""
        dx, dy = pos[0] - self.env.vehicle.position[0], pos[1] - self.centre_y()
        return self.cx * self.width + dx * self.scaling, self.height / 2 + dy * self.scaling


class _Policy:
    """Rules over visible traffic: pass slower leaders where a lane is clear, else follow."""

    def __init__(self, env: Any, scenario: str, camera: Any, rng: np.random.Generator):
        self.env, self.scenario, self.camera, self.rng = env, scenario, camera, rng
        self.cruise = CRUISE.get(scenario) or float(rng.choice([24.0, 26.0, 28.0]))
        self.busy_until = 0.0  # no lane command before this time (commands stack)
        self.signal, self.signal_since = 0, 0.0  # indicator: -1 left, +1 right, 0 off
        env.vehicle.KP_A = 1 / 0.3  # ego only: SLOWER on the 2 m/s grid brakes at 3-10 m/s^2

    def act(self, now: float, changing: bool) -> tuple[str, str]:
        """(meta action, reason) for the current state."""
        ego, road = self.env.vehicle, self.env.road
        others = [v for v in road.vehicles if v is not ego] + list(road.objects)
        seen = [v for v in others if self.camera.sees(v.position)]
        if self.scenario in STRAIGHT:
            return self._straight(seen, now, changing)
        return self._generic(seen)

    def _speed(self, want: float) -> str:
        speed = self.env.vehicle.speed
        return "SLOWER" if speed > want + 1.0 else "FASTER" if speed < want - 1.5 else "IDLE"

    def _straight(self, seen: list[Any], now: float, changing: bool) -> tuple[str, str]:
        ego, x = self.env.vehicle, self.env.vehicle.position[0]
        lanes = self.env.road.network.graph[ego.lane_index[0]][ego.lane_index[1]]
        lane_id = (ego.target_lane_index if changing else ego.lane_index)[2]
        s = lanes[lane_id].local_coordinates(ego.position)[0]
        centres = {  # lanes we may drive whose centre is in the frame
            j: float(lane.position(s, 0.0)[1])
            for j, lane in enumerate(lanes)
            if not lane.forbidden and self.camera.lane_in_view(lane, s)
        }

        def in_lane(j: int) -> list[tuple[float, float]]:
            near = [v for v in seen if abs(v.position[1] - centres[j]) < LANE_HALF]
            return sorted((v.position[0] - x, v.speed) for v in near)

        ahead = [v for v in in_lane(lane_id) if v[0] > 0] if lane_id in centres else []
        leader = ahead[0] if ahead else None
        gap = leader[0] - ego.LENGTH if leader else math.inf
        closing = ego.speed - leader[1] if leader else 0.0
        react = min(REACT_MAX, REACT + max(closing, 0.0))
        reach = REACT_MAX if self.signal else react  # once indicating, following keeps it on
        blocked = gap < reach and leader[1] < self.cruise - 1.0
        wanted = 0  # the lane change we are indicating for, if any
        room = gap - 1.5 * max(closing, 0.0) > 4.0  # the leader stays clear during a change
        if blocked and room and not changing and now >= self.busy_until:

            def free(j: int) -> bool:
                for dx, speed in in_lane(j):
                    rel = ego.speed - speed
                    if -GAP_BEHIND + 1.5 * min(rel, 0) < dx < GAP_AHEAD + 2 * max(rel, 0):
                        return False
                    if 0 < dx < leader[0] + 5.0 and speed < leader[1] + 1.0:  # no better there
                        return False
                return True

            options = [j for j in (lane_id - 1, lane_id + 1) if j in centres and free(j)]
            if self.signal and lane_id + self.signal in centres:  # wait for a gap on that side
                wanted = self.signal
                options = [lane_id + wanted] if lane_id + wanted in options else []
            elif options and self.camera.prefer_left:  # overtake on the left where it is free
                wanted = options[0] - lane_id
            elif options:
                wanted = options[int(self.rng.integers(len(options)))] - lane_id
            if self._indicated(wanted, now) and options:
                return ("LANE_LEFT" if wanted < 0 else "LANE_RIGHT"), "pass"
        if gap < react:  # follow, with hysteresis between safe and safe + 8 m
            self._drop_signal(changing, wanted)
            safe = 6.0 + 0.8 * ego.speed
            want = leader[1] - 1.0 if gap < safe else leader[1] + 1.5 * (gap > safe + 8)
            return self._speed(min(self.cruise, want)), "leader"
        right = lane_id + 1
        settled = not changing and now >= self.busy_until + KEEP_RIGHT_AFTER
        if settled and right in centres and all(dx < -GAP_BEHIND for dx, _ in in_lane(right)):
            wanted = 1
            if self._indicated(1, now):
                return "LANE_RIGHT", "keep_right"  # the right lane is visibly empty
        self._drop_signal(changing, wanted)
        return self._speed(self.cruise), "cruise"

    def _drop_signal(self, changing: bool, wanted: int) -> None:
        """Indicator off when the lane change it announced is no longer wanted (the ego is no
        longer blocked, or the right lane it was keeping to is no longer empty)."""
        if not changing and self.signal != wanted:
            self.signal = 0

    def _indicated(self, side: int, now: float) -> bool:
        """Indicate `side` (-1 left, +1 right, 0 none); True once it has been on for SIGNAL_S."""
        if not side:
            return False
        if self.signal != side:
            self.signal, self.signal_since = side, now
        return now - self.signal_since >= SIGNAL_S - 1e-9

    def _generic(self, seen: list[Any]) -> tuple[str, str]:
        """Follow the route; slow for a vehicle on it, wait for one that will cross it."""
        ego, network = self.env.vehicle, self.env.road.network
        head = ego.target_lane_index
        chain = (
            [network.get_lane(head)]
            + [  # route lanes, keeping our lane id where it exists
                network.get_lane((*r[:2], min(head[2], len(network.graph[r[0]][r[1]]) - 1)))
                for r in ego.route or []
                if r[:2] != head[:2]
            ]
        )
        times = np.arange(25) * 0.125  # the next 3 s, driven at least at half the cruise speed
        probe = max(ego.speed, 0.5 * self.cruise)
        s0 = chain[0].local_coordinates(ego.position)[0]
        path = np.array([_along(chain, s0 + probe * t) for t in times])
        forward = np.array([math.cos(ego.heading), math.sin(ego.heading)])
        want, why = self.cruise, "cruise"
        for other in seen:
            if float((other.position - ego.position) @ forward) < 0:
                continue  # behind
            near = np.linalg.norm(path - other.position, axis=1) < 2.5
            if near.any():  # on our path: follow it
                gap = probe * times[np.argmax(near)] - ego.LENGTH
                safe = 4.0 + 1.2 * ego.speed
                if gap < safe + 8.0 and other.speed - (gap < safe) < want:
                    want, why = other.speed - (gap < safe), "leader"
            elif (np.linalg.norm(path[1:] - _predict(other, times[1:]), axis=1) < 3.5).any():
                return self._speed(0.0), "yield"  # it will cross our path: wait
        return self._speed(max(want, 0.0)), why


def _predict(other: Any, times: np.ndarray) -> np.ndarray:
    """Where a visible vehicle will be: along its lane at constant speed, else straight on."""
    try:
        return np.array(other.predict_trajectory_constant_speed(times)[0])
    except (AttributeError, IndexError, KeyError, ValueError):  # obstacles, odd routes
        return other.position + np.outer(times, getattr(other, "velocity", np.zeros(2)))


def _along(lanes: list[Any], s: float) -> np.ndarray:
    """Position `s` metres along a chain of lanes (extrapolating the last one)."""
    for lane in lanes[:-1]:
        if s <= lane.length:
            return lane.position(s, 0.0)
        s -= lane.length
    return lanes[-1].position(s, 0.0)


def _off_road(env: Any) -> bool:
    """Beside its closest lane, or past the end of a lane that leads nowhere."""
    ego = env.vehicle
    s, r = ego.lane.local_coordinates(ego.position)
    dead_end = not env.road.network.graph.get(ego.lane_index[1])
    return abs(r) > ego.lane.width_at(s) or (dead_end and s > ego.lane.length)


def scene_facts(
    ego: Any,
    road: Any,
    visible: Callable[[np.ndarray], bool],
    counts: Callable[[np.ndarray], bool] | None = None,
) -> tuple[str, str, float | None, float | None, Any]:
    """(left lane, right lane, leader gap m, closing speed m/s, leader vehicle) of the present
    state.

    A neighbour lane (same road edge, lane id -1 / +1) is "occupied" when a vehicle's centre is
    within LANE_HALF of it laterally and -GAP_BEHIND..GAP_AHEAD m along it from the ego (and
    `counts(position)` holds, when given), "free" otherwise, "no_lane" when there is none. The
    leader is the nearest vehicle ahead in the ego's lane for which `visible(position)` holds:
    gap bumper to bumper along the lane (< 0 only when the boxes overlap, just before a crash),
    closing speed > 0 when the ego nears it; gap, speed and vehicle are None without one.
    Distances are in the current lane's coordinates, so on curved roads (roundabout,
    intersection) they approximate the path length."""
    lanes = road.network.graph[ego.lane_index[0]][ego.lane_index[1]]
    own = ego.lane_index[2]
    others = [v for v in road.vehicles if v is not ego] + list(road.objects)

    def along(lane: Any) -> list[tuple[float, Any]]:  # (m ahead of the ego, vehicle) in `lane`
        s0 = lane.local_coordinates(ego.position)[0]
        coords = [(lane.local_coordinates(v.position), v) for v in others]
        return [(float(s - s0), v) for (s, r), v in coords if abs(r) < LANE_HALF]

    def state(j: int) -> str:
        if not 0 <= j < len(lanes):
            return "no_lane"
        near = any(
            -GAP_BEHIND < ds < GAP_AHEAD and (counts is None or counts(v.position))
            for ds, v in along(lanes[j])
        )
        return "occupied" if near else "free"

    ahead = [(ds, v) for ds, v in along(lanes[own]) if ds > 0 and visible(v.position)]
    if not ahead:
        return state(own - 1), state(own + 1), None, None, None
    ds, leader = min(ahead, key=lambda item: item[0])
    lane = lanes[own]
    heading = lane.heading_at(lane.local_coordinates(ego.position)[0])
    closing = (ego.velocity - leader.velocity) @ np.array([math.cos(heading), math.sin(heading)])
    turned = leader.heading - heading  # a crossing vehicle's extent along our lane is its width
    extent = abs(math.cos(turned)) * leader.LENGTH + abs(math.sin(turned)) * leader.WIDTH
    gap = ds - (ego.LENGTH + extent) / 2
    return state(own - 1), state(own + 1), round(gap, 3), round(float(closing), 3), leader


def _runs(index: np.ndarray, gap: int) -> list[np.ndarray]:
    return np.split(index, np.flatnonzero(np.diff(index) > gap) + 1) if len(index) else []


def _speed_events(speed: np.ndarray, reasons: list[str], times: np.ndarray) -> list[Event]:
    """Brake/yield while the speed drops by >= BRAKE_DROP; stop while it is below STOP_SPEED."""
    events = []
    for run in _runs(np.flatnonzero(speed[1:] < speed[:-1] - 0.05), 3):  # k: frame k -> k+1
        a, b = int(run[0]), int(run[-1]) + 1
        if speed[a] - speed[b] >= BRAKE_DROP:
            why = reasons[a:b]
            kind = "yield" if why.count("yield") > why.count("leader") else "brake"
            events.append(Event(kind, float(times[a]), float(times[b])))
    for run in _runs(np.flatnonzero(speed < STOP_SPEED), 1):
        if len(run) >= 2:
            events.append(Event("stop", float(times[run[0]]), float(times[run[-1]])))
    return events


def _turn_kind(lane: Any) -> str | None:
    bend = (lane.heading_at(lane.length) - lane.heading_at(0.0) + np.pi) % (2 * np.pi) - np.pi
    return "turn_right" if bend > 0.5 else "turn_left" if bend < -0.5 else None  # y points down


def _drive(env: Any, steering: float, acceleration: float) -> bool:
    """One policy period (`env.step`) with the ego taking `steering` (rad, > 0 turns right: y
    points down) and `acceleration` (m/s^2) on every simulation sub-step, bypassing its lane and
    speed controllers, while every other vehicle acts as usual; whether the episode was truncated.

    `env.step` keeps its bookkeeping (time, steps, spawned traffic, truncation); the ego's `act`
    is shadowed for the step, and the meta-action is None, so the ego gets none."""
    from highway_env.vehicle.kinematics import Vehicle

    ego = env.unwrapped.vehicle
    ego.act = lambda action=None: Vehicle.act(  # a fresh dict: `step` clips it in place
        ego, {"steering": float(steering), "acceleration": float(acceleration)}
    )
    try:
        return env.step(None)[3]
    finally:
        del ego.act  # the class's act again


def _simulate(
    env: Any,
    scenario: str,
    image_size: tuple[int, int],
    steps: int,
    fps: float,
    seed: int,
    front: tuple[CameraGeometry, Style] | None = None,
    control: Control | None = None,
    render: bool = True,
):
    """One episode: frames, events, ego series and scene facts from simulator truth, and whether
    it crashed; seen from above, or from the windshield with `front` (geometry, appearance).

    `control(k)` may take the ego over at frame k: where it gives (steering rad, acceleration
    m/s^2), the ego drives with them for that policy period instead of following the policy (see
    `_drive`); once it gives None again, a lane keeper drives (IDLE toward the lane the ego is in
    then, at its speed then), never the policy. Without `render` no frames are drawn (`frames` is
    empty): the ego's rules read the simulator, not the pixels."""
    rng = np.random.default_rng(seed)
    exit_ = {"config": {"destination": f"o{seed % 3 + 1}"}}  # intersection: left/straight/right
    env.reset(seed=seed, options=exit_ if scenario == "intersection" else None)
    u = env.unwrapped
    if scenario == "highway":  # spread traffic speeds: slower cars to pass, faster ones to follow
        for vehicle in u.road.vehicles[1:]:
            vehicle.target_speed = float(rng.uniform(*TRAFFIC_SPEEDS))
    if front is None:
        camera: Any = _Camera(u, scenario, image_size)
    else:
        camera = FrontView(u, image_size, *front, seed=seed)
    policy, actions = _Policy(u, scenario, camera, rng), u.action_type.actions_indexes
    frames, speed, steer, heading, lane, reasons, events, facts = [], [], [], [], [], [], [], []
    boxes: list[list[float] | None] = []  # the leader's image box (front camera)
    pending, turn, crashed, last = None, None, False, False
    driver = "policy"  # then "control" while `control` gives controls, "keeper" after them
    for k in range(steps):
        ego, now = u.vehicle, k / fps
        if render:
            frames.append(camera.render(policy.signal))
        speed.append(float(ego.speed))
        steer.append(float(ego.action["steering"]))
        heading.append(float(ego.heading))  # rad; y points down, so it grows turning right
        lane.append(float(ego.lane_index[2]))
        *fact, leader = scene_facts(ego, u.road, camera.visible, camera.counts)
        facts.append(fact)
        if front is not None:
            boxes.append(None if leader is None else camera.box(leader))
        if pending is not None:  # lane change: from the command until settled in the target lane
            start, src, dst = pending
            offset = abs(ego.lane.local_coordinates(ego.position)[1])
            if (ego.lane_index[2] == dst and offset < 0.4) or now - start >= LANE_CHANGE_MAX:
                if ego.lane_index[2] == dst:
                    events.append(Event(_LANE_CHANGE[dst < src], start, now))
                pending, policy.busy_until, policy.signal = None, now + 1.0, 0
        in_turn = str(ego.lane_index[0])[:2] == "ir" and str(ego.lane_index[1])[:2] == "il"
        if in_turn and turn is None:
            turn = (now, _turn_kind(ego.lane))
        elif turn and turn[0] is not None and not in_turn:
            if turn[1] is not None:
                events.append(Event(turn[1], turn[0], now))
            turn = (None, None)  # one pass through the intersection
        if last or k == steps - 1:
            break
        given = None if control is None else control(k)
        if given is not None:
            driver, policy.signal = "control", 0  # the policy no longer indicates
            reasons.append("control")
            truncated = _drive(env, *given)
        elif driver != "policy":
            if driver == "control":  # controls ended: keep the lane it is in, at its speed
                ego.target_lane_index, ego.target_speed = ego.lane_index, float(ego.speed)
            driver = "keeper"
            reasons.append("keeper")
            truncated = env.step(actions["IDLE"])[3]
        else:
            name, why = policy.act(now, pending is not None)
            reasons.append(why)
            before = ego.target_lane_index
            truncated = env.step(actions.get(name, actions["IDLE"]))[3]
            if name.startswith("LANE") and ego.target_lane_index != before:
                pending = (now, int(lane[-1]), int(ego.target_lane_index[2]))
        if ego.crashed:  # drop the crash frame itself
            crashed = True
            break
        last = truncated or _off_road(u)  # past any goal the ego drives on to the road's end
    times = np.arange(len(speed)) / fps
    end = float(times[-1])
    if pending is not None and lane[-1] == pending[2] and pending[0] < end:
        events.append(Event(_LANE_CHANGE[pending[2] < pending[1]], pending[0], end))
    if turn and turn[0] is not None and turn[1] is not None and turn[0] < end:
        events.append(Event(turn[1], turn[0], end))
    speeds = np.array(speed)
    events += _speed_events(speeds, [*reasons, "cruise"][: len(speed)], times)
    events = sorted(
        (Event(e.maneuver, round(e.start, 4), round(e.end, 4)) for e in events),
        key=lambda e: (e.start, e.maneuver),
    )
    accel = np.gradient(speeds, 1 / fps) if len(speeds) > 1 else np.zeros(1)
    series = dict(time=times, speed=speeds, steering=steer, acceleration=accel, lane=lane)
    series["heading"] = np.unwrap(heading)
    ego_series = {key: [round(float(v), 4) for v in val] for key, val in series.items()}
    columns = zip(*facts, strict=True)  # per-frame tuples -> one series per fact
    scene = {name: list(v) for name, v in zip((*SCENE_LANES, *SCENE_LEADER), columns, strict=True)}
    if front is not None:
        scene[SCENE_BOX] = boxes
    return frames, events, ego_series, scene, crashed


def _write_video(path: Path, frames: list[np.ndarray], fps: float, qp: int = 20) -> None:
    """H.264 (yuv420p) mp4 at exactly `fps`, written to a temp name then renamed.

    A constant quantizer, not CRF: x264's CRF rate control decides in floating point, and after
    pygame has run in the process the same frames encoded twice came out different (measured:
    pixel differences up to 24 on a second `make_clips` in one process). With `qp` and one
    thread the same seed gives the same bytes, in one process or several."""
    import av  # native video decoder, loaded on first decode

    with atomic_path(path) as tmp, av.open(str(tmp), mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": str(qp), "threads": "1"}  # bit-exact reruns
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def parse_scenarios(spec: str) -> dict[str, float]:
    """`highway`, `highway,merge` (equal shares) or `highway=0.7,merge=0.3` -> normalised shares."""
    where = f"scenario {spec!r} (--scenario, data.highway.scenario)"
    items = [item.strip() for item in str(spec).split(",")]
    shares: dict[str, float] = {}
    for item in items:
        name, has_share, share = (part.strip() for part in item.partition("="))
        if name not in SCENARIOS:
            raise ValueError(f"{where}: unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
        if name in shares:
            raise ValueError(f"{where} names {name!r} twice: give each scenario once")
        try:
            value = float(share) if has_share else 1.0
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise ValueError(
                f"{where}: the share of {name!r} must be a number > 0, e.g. highway=0.7,merge=0.3"
            )
        shares[name] = value
    if len({"=" in item for item in items}) > 1:
        raise ValueError(
            f"{where}: give every scenario a share (highway=0.7,merge=0.3) or none (highway,merge: "
            "equal shares)"
        )
    total = sum(shares.values())
    return {name: value / total for name, value in shares.items()}


def scenario_plan(shares: dict[str, float], num: int) -> list[str]:
    """The scenario of each video index: largest-remainder counts, each spread evenly over the
    indices (interleaved), ties in the order of `shares`."""
    exact = {name: share * num for name, share in shares.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    by_remainder = sorted(shares, key=lambda name: counts[name] - exact[name])  # stable: ties
    for name in by_remainder[: num - sum(counts.values())]:
        counts[name] += 1
    slots = [
        ((j + 0.5) / counts[name], rank, name)
        for rank, name in enumerate(shares)
        for j in range(counts[name])
    ]
    return [name for *_, name in sorted(slots)]


def _check(
    scenario: str,
    num: int,
    fps: float,
    image_size: tuple[int, int],
    seconds: float,
    workers: int,
    zoom: float = 1.0,
    camera: str = "top",
    front: FrontSettings | None = None,
) -> dict[str, float]:
    """Validate make_clips' arguments; the scenario shares."""
    shares = parse_scenarios(scenario)
    if camera not in CAMERAS:
        raise ValueError(f"camera (--camera) must be one of {', '.join(CAMERAS)}, got {camera!r}")
    if front is not None:
        front.geometry.validate("data.highway.front")
    if not 0.25 <= zoom <= 4:
        raise ValueError(f"zoom (--zoom) must lie in [0.25, 4] (1: the default view), got {zoom}")
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be an integer >= 1, got {num!r}")
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers (--workers) must be an integer >= 1, got {workers!r}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    if not seconds * fps >= 2:
        raise ValueError(f"seconds * fps must give at least 2 frames, got {seconds} s at {fps}")
    if (
        len(image_size) != 2
        or min(image_size) < 32
        or any(int(v) != v or v % 2 for v in image_size)
    ):
        raise ValueError(
            "image_size must be (height, width), even integers >= 32 (H.264 yuv420p needs even "
            f"height and width), got {image_size!r}"
        )
    return shares


@contextmanager
def highway_gym(
    scenario: str, fps: float, image_size: tuple[int, int], seconds: float, zoom: float = 1.0
) -> Iterator[Any]:
    """A highway-env gymnasium env for one video's settings, closed (and the IDM class attributes
    intersection-v0 edits restored) on exit."""
    if os.environ.get("SDL_VIDEODRIVER", "dummy") == "dummy":  # "dummy" renders black frames
        os.environ["SDL_VIDEODRIVER"] = "offscreen"
    # highway-env (gymnasium, pygame) is heavy and needed only when generating clips
    import gymnasium as gym
    import highway_env  # noqa: F401  (registers the env ids)
    from highway_env.vehicle.behavior import IDMVehicle

    kept = ("DISTANCE_WANTED", "COMFORT_ACC_MAX", "COMFORT_ACC_MIN")
    idm = {k: getattr(IDMVehicle, k) for k in kept}
    config = _env_config(scenario, fps, image_size, seconds, zoom)
    with warnings.catch_warnings():  # "-v0 is out of date": the v0 ids are the documented API
        warnings.simplefilter("ignore", DeprecationWarning)
        env = gym.make(
            SCENARIOS[scenario], render_mode="rgb_array", config=config, disable_env_checker=True
        )
    try:
        yield env
    finally:
        env.close()
        for key, value in idm.items():
            setattr(IDMVehicle, key, value)


def _make_video(
    out: Path,
    index: int,
    scenario: str,
    seed: int,
    fps: float,
    image_size: tuple[int, int],
    seconds: float,
    zoom: float = 1.0,
    front: FrontSettings | None = None,
) -> dict[str, Any]:
    """Simulate and write video `index` in a fresh env (seen from the windshield with `front`);
    its record for the summary.

    Its env seed, and those of its retries, depend on (`seed`, `index`) alone, so a video is the
    same whichever process makes it and whatever it made before."""
    import highway_env

    steps = max(2, round(seconds * fps))
    min_frames = min(steps, round(MIN_SECONDS * fps))
    with highway_gym(scenario, fps, image_size, seconds, zoom) as env:
        for attempt in range(MAX_ATTEMPTS):
            env_seed = seed + index + attempt * RETRY_STRIDE
            view = None if front is None else front.for_video(env_seed, zoom)
            frames, events, ego, scene, crashed = _simulate(
                env, scenario, image_size, steps, fps, env_seed, view
            )
            if len(frames) >= min_frames:
                break
        else:
            raise RuntimeError(
                f"clip {index} ({scenario}): every attempt ended before {min_frames} frames"
            )
    if not frames[0].any():
        raise RuntimeError("highway-env rendered black frames (SDL_VIDEODRIVER=dummy?)")
    name = f"clip_{index:05d}"
    _write_video(out / "videos" / f"{name}.mp4", frames, fps)
    source = dict(generator="highway-env", version=highway_env.__version__)
    source.update(scenario=scenario, env_id=SCENARIOS[scenario], seed=env_seed, fps=fps)
    source.update(crashed=crashed, policy=POLICY if view is None else POLICY_FRONT, zoom=zoom)
    if view is not None:
        source.update(camera="front", geometry=view[0].as_dict(), style=view[1].as_dict())
    write_annotation(out / "annotations" / f"{name}.json", events, ego, source, scene=scene)
    return dict(
        name=name, scenario=scenario, frames=len(frames), events=events, crashed=crashed,
        retries=attempt,
    )  # fmt: skip


def _records(
    job: Callable[[int, str], dict[str, Any]], plan: list[str], workers: int
) -> Iterator[dict[str, Any]]:
    """`job(index, scenario)` for every video, in index order: here, or in `workers` processes."""
    if workers == 1:
        yield from map(job, range(len(plan)), plan)
        return
    context = multiprocessing.get_context("spawn")  # fork would copy pygame's and torch's state
    pool = ProcessPoolExecutor(min(workers, len(plan)), mp_context=context)
    try:
        with workers_ignore_ctrl_c():  # map submits every job, which starts the processes
            results = pool.map(job, range(len(plan)), plan)
        yield from results
    finally:
        pool.shutdown(cancel_futures=True)


def make_clips(
    out: str | Path,
    num: int,
    scenario: str = "highway",
    seed: int = 0,
    fps: float = 8.0,
    image_size: tuple[int, int] = (128, 128),
    seconds: float = 20.0,
    progress: bool = False,
    workers: int = 1,
    zoom: float = 1.0,
    camera: str = "top",
    front: FrontSettings | None = None,
) -> dict:
    """Simulate `num` videos: out/videos/clip_XXXXX.mp4 + out/annotations/clip_XXXXX.json.

    `scenario` is one name or a mix (`highway,merge`, `highway=0.7,merge=0.3`; see
    `scenario_plan`); `image_size` is (height, width) in pixels, the order of `clip.image_size`;
    `workers` processes simulate at once, and the files are the same for any number of them;
    `zoom` scales the camera (2: the road twice as large, half as much of it in view); `camera`
    "front" films from the ego's windshield (`highway_front`) with the settings `front` (default:
    `FrontSettings()`, a geometry and appearance drawn per video)."""
    if camera == "front" and front is None:
        front = FrontSettings()
    front = front if camera == "front" else None
    shares = _check(scenario, num, fps, image_size, seconds, workers, zoom, camera, front)
    image_size = (int(image_size[0]), int(image_size[1]))
    out = Path(out)
    for sub in ("videos", "annotations"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    plan = scenario_plan(shares, num)
    spec = ",".join(f"{name}={share:.4g}" for name, share in shares.items())
    summary: dict[str, Any] = dict(
        scenario=spec if len(shares) > 1 else plan[0], scenarios=shares, seed=seed, fps=fps,
        image_size=list(image_size), seconds=seconds, workers=workers, zoom=zoom, camera=camera,
        **_empty_tally(),
        files=[], clip_scenarios=[], by_scenario={name: _empty_tally() for name in shares},
    )  # fmt: skip
    job = partial(
        _make_video, out, seed=seed, fps=fps, image_size=image_size, seconds=seconds, zoom=zoom,
        front=front,
    )  # fmt: skip
    started = time.perf_counter()
    for record in _records(job, plan, workers):
        _tally(summary, record, fps)
        _tally(summary["by_scenario"][record["scenario"]], record, fps)
        summary["files"].append(f"videos/{record['name']}.mp4")
        summary["clip_scenarios"].append(record["scenario"])
        if progress:
            rate = summary["frames"] / (time.perf_counter() - started)  # wall-clock speed
            line = f"{record['name']} ({record['scenario']}): {record['frames'] / fps:.1f} s of "
            line += f"video, {len(record['events'])} events; simulation speed {rate:.0f} frames/s"
            print(line, file=sys.stderr, flush=True)
    summary["wall_seconds"] = round(time.perf_counter() - started, 2)
    return summary


def _empty_tally() -> dict[str, Any]:
    return dict(videos=0, frames=0, event_counts={}, event_seconds={}, crashed=0, retries=0)


def _tally(summary: dict, record: dict[str, Any], fps: float) -> None:
    """Add one video's record to a summary's counts (time outside every event is keep_lane)."""
    duration = record["frames"] / fps
    for key in ("frames", "crashed", "retries"):
        summary[key] += int(record[key])
    summary["videos"] += 1
    counts, secs = summary["event_counts"], summary["event_seconds"]
    for e in record["events"]:
        counts[e.maneuver] = counts.get(e.maneuver, 0) + 1
        secs[e.maneuver] = round(secs.get(e.maneuver, 0.0) + e.end - e.start, 3)
    covered, reach = 0.0, 0.0
    for e in sorted(record["events"], key=lambda e: e.start):
        covered += max(0.0, min(e.end, duration) - max(e.start, reach))
        reach = max(reach, min(e.end, duration))
    secs["keep_lane"] = round(secs.get("keep_lane", 0.0) + duration - covered, 3)


def _balance(tally: dict) -> list[str]:
    """Class-balance table lines (events and seconds per maneuver) of one tally."""
    secs = tally["event_seconds"]
    total = sum(secs.values()) or 1.0
    lines = [f"{'maneuver':<18}{'events':>7}{'seconds':>10}{'share':>8}"]
    for name in sorted(secs, key=lambda n: -secs[n]):
        count = tally["event_counts"].get(name, "-")
        lines.append(f"{name:<18}{count!s:>7}{secs[name]:>10.1f}{secs[name] / total:>8.1%}")
    return lines


def format_summary(summary: dict) -> str:
    """Class-balance tables (events and seconds per maneuver; per scenario for a mix) for a
    make_clips summary."""
    height, width = summary["image_size"]
    lines = [
        f"{summary['videos']} {summary['scenario']} videos, {summary['frames']} frames, video fps "
        f"{summary['fps']:g}, {height}x{width} px (HxW), {summary.get('crashed', 0)} ended by a "
        f"crash; simulation speed {summary['frames'] / max(summary['wall_seconds'], 1e-9):.0f} "
        f"frames/s with {summary.get('workers', 1)} worker(s)",
        *_balance(summary),
    ]
    by_scenario = summary.get("by_scenario", {})
    for name, tally in by_scenario.items() if len(by_scenario) > 1 else ():
        lines += ["", f"{name}: {tally['videos']} videos, {tally['frames']} frames"]
        lines += _balance(tally)
    return "\n".join(lines)
