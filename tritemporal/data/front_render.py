"""The simulator's state seen from the windshield: a CPU rasteriser (numpy + Pillow polygons).

Why polygons, not per-pixel ray casting: the scene is a ground plane with lanes and boxes on it,
so a frame is ~100 convex polygons painted far to near (the painter's algorithm is exact for
boxes standing apart on a plane) by Pillow's C scanline filler; at 2x supersampling and a box
downsample (the anti-aliasing of the top-down frames) it runs at hundreds of frames per second
per core (`tritemporal bench --front-render`).

What is drawn: sky (a gradient to a haze at the horizon), ground to the horizon, the road surface
of every lane, a shoulder beyond its edges, lane markings as highway-env's lanes have them
(`LineType.STRIPED` as dashes, `CONTINUOUS` / `CONTINUOUS_LINE` solid, at real sizes: 3 m dashes
every 12 m, 15 cm wide, the US MUTCD's 10 ft / 30 ft), vehicles and obstacles as shaded boxes
with a shadow, windows, tail lights that brighten while the vehicle decelerates harder than
`BRAKE_LIGHT` m/s^2, and indicators blinking at 1.5 Hz while it changes lanes. Distant surfaces
fade into the haze. The ego itself is not drawn: the camera sits inside it, so its own
indicator, speedometer and mirrors are not in the video (see `data/highway.py`).

Per-video appearance (`Style`): road, ground, sky and vehicle colours, brightness, a time-of-day
tint and mild Gaussian sensor noise, drawn once per video and recorded in its `source`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from tritemporal.data.front_camera import NEAR, CameraGeometry, PinholeCamera, clip_near

SUPERSAMPLE = 2
DRAW_RANGE = 160.0  # m: road and vehicles farther than this are left to the haze
MARK_RANGE = 70.0  # m: dashes farther than this are under a pixel long at 128x256
DETAIL_RANGE = 60.0  # m: windows and lamps of vehicles farther than this are not drawn
NOISE_FIELDS = 8  # sensor noise: a bank of fields per video, one drawn per frame
DASH, DASH_PERIOD, MARK_WIDTH = 3.0, 12.0, 0.15  # m
SHOULDER = 1.5  # m of paved shoulder outside a road edge line
BRAKE_LIGHT = -1.0  # m/s^2: tail lights on below this acceleration
BLINK_HZ = 1.5
CURVE_STEP = 2.0  # m between the samples of a curved lane's quads (a straight one has one)
FOG_DISTANCE = 250.0  # m: a surface this far is 1 - 1/e hazed
CAR_COLOURS = (  # common car paints (RGB)
    (236, 236, 232), (190, 192, 196), (120, 122, 128), (34, 36, 40), (150, 28, 30),
    (32, 60, 130), (40, 70, 52), (196, 180, 150), (90, 40, 30), (225, 200, 60),
)  # fmt: skip
TINTS = {  # time of day -> (RGB multiplier, zenith sky, horizon haze)
    "noon": ((1.0, 1.0, 1.0), (70, 130, 210), (200, 215, 230)),
    "overcast": ((0.92, 0.95, 1.0), (150, 155, 165), (200, 202, 206)),
    "dusk": ((1.08, 0.9, 0.75), (60, 70, 130), (240, 170, 110)),
}


@dataclass(frozen=True)
class Style:
    """One video's appearance (colours in RGB before `brightness` and the tint)."""

    time_of_day: str = "noon"
    brightness: float = 1.0
    road: tuple[int, int, int] = (100, 100, 104)
    ground: tuple[int, int, int] = (88, 120, 62)
    marking: tuple[int, int, int] = (225, 225, 220)
    noise: float = 1.5  # std of the sensor noise, in 0-255 units

    @classmethod
    def varied(cls, rng: np.random.Generator) -> Style:
        """A random appearance within what day-time dash cams record."""
        grey = float(rng.uniform(75, 130))
        ground = rng.choice([(88, 120, 62), (120, 130, 70), (140, 125, 90), (70, 100, 60)])
        jitter = rng.uniform(0.85, 1.15, 3)
        return cls(
            time_of_day=str(rng.choice(list(TINTS))),
            brightness=round(float(rng.uniform(0.75, 1.15)), 3),
            road=(round(grey), round(grey), round(grey * float(rng.uniform(0.97, 1.06)))),
            ground=tuple(int(min(255, c * j)) for c, j in zip(ground, jitter, strict=True)),
            marking=tuple([round(float(rng.uniform(190, 235)))] * 3),
            noise=round(float(rng.uniform(0.0, 3.0)), 3),
        )  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Any]:
        """The appearance, as recorded in an annotation's `source.style`."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass
class _Mesh:
    """The road's static polygons in world coordinates: quads [N, 4, 3], their fill colours, and
    the centre [N, 2], radius [N] and drawing range [N] that decide which are near enough."""

    quads: np.ndarray
    colours: list[tuple[int, int, int]]
    centres: np.ndarray
    radii: np.ndarray
    ranges: np.ndarray


def _lane_points(lane: Any, s: np.ndarray, r: float) -> np.ndarray:
    """World (x, y) of lane coordinates (s[i], r); vectorised for straight lanes."""
    if type(lane).__name__ == "StraightLane":
        return lane.start + np.outer(s, lane.direction) + r * lane.direction_lateral
    return np.array([lane.position(float(v), r) for v in s])


def _strip(lane: Any, s: np.ndarray, r0: float, r1: float, ends: np.ndarray | None = None):
    """Ground quads [N, 4, 3] between lateral offsets r0 and r1: from each station s[i] to
    ends[i] (N = len(s)), or without `ends` from s[i] to s[i + 1] (N = len(s) - 1)."""
    starts, ends = (s[:-1], s[1:]) if ends is None else (s, ends)
    corners = [(starts, r0), (starts, r1), (ends, r1), (ends, r0)]
    quads = np.stack([_lane_points(lane, at, r) for at, r in corners], axis=1)
    return np.concatenate([quads, np.zeros((*quads.shape[:2], 1))], axis=2)


def _stations(lane: Any) -> np.ndarray:
    """Where a lane's surface quads start and end: its ends if straight, every CURVE_STEP m
    otherwise (near-plane clipping cuts a long quad where it passes the camera)."""
    straight = type(lane).__name__ == "StraightLane"
    count = 1 if straight else max(1, math.ceil(lane.length / CURVE_STEP))
    return np.linspace(0.0, lane.length, count + 1)


def road_mesh(road: Any, style: Style, palette: Any) -> _Mesh:
    """Every lane's surface, shoulders beside its edge lines and its markings, as ground quads."""
    from highway_env.road.lane import LineType

    parts: list[tuple[np.ndarray, np.ndarray, float]] = []  # (quads, colour, range)
    for lane in road.network.lanes_list():
        s = _stations(lane)
        half = lane.width_at(0.0) / 2
        parts.append((_strip(lane, s, -half - 0.05, half + 0.05), palette(style.road), DRAW_RANGE))
        for side, line in zip((-1, 1), lane.line_types, strict=True):
            edge = side * half
            if line == LineType.CONTINUOUS_LINE:  # a road edge: a paved shoulder beyond it
                shoulder = palette(tuple(0.9 * c for c in style.road))
                parts.append((_strip(lane, s, edge, edge + side * SHOULDER), shoulder, DRAW_RANGE))
            if line in (LineType.CONTINUOUS, LineType.CONTINUOUS_LINE):
                quads = _strip(lane, s, edge - MARK_WIDTH / 2, edge + MARK_WIDTH / 2)
                parts.append((quads, palette(style.marking), DRAW_RANGE))
            elif line == LineType.STRIPED:
                starts = np.arange(0.0, max(lane.length - DASH, 0.0), DASH_PERIOD)
                quads = _strip(
                    lane, starts, edge - MARK_WIDTH / 2, edge + MARK_WIDTH / 2, starts + DASH
                )
                parts.append((quads, palette(style.marking), MARK_RANGE))
    quads = np.concatenate([q for q, _, _ in parts])
    colours = [_rgb(c) for q, c, _ in parts for _ in range(len(q))]
    ranges = np.concatenate([np.full(len(q), reach) for q, _, reach in parts])
    centres = quads[:, :, :2].mean(axis=1)
    radii = np.linalg.norm(quads[:, :, :2] - centres[:, None], axis=2).max(axis=1)
    return _Mesh(quads, colours, centres, radii, ranges)


def _rgb(colour: np.ndarray) -> tuple[int, int, int]:
    """A fill colour for Pillow."""
    r, g, b = (int(c + 0.5) for c in colour)
    return r, g, b


# a box's corners: (length sign, width sign, up 0/1); each face lists its corners in order round it
_CORNERS = np.array([(a, b, c) for c in (0, 1) for a in (-1, 1) for b in (-1, 1)], dtype=float)
_FACES = {  # name -> (corner ids, outward normal in the vehicle frame, shade)
    "rear": ((0, 1, 5, 4), (-1, 0, 0), 0.72),
    "front": ((2, 3, 7, 6), (1, 0, 0), 0.72),
    "left": ((0, 2, 6, 4), (0, -1, 0), 0.58),
    "right": ((1, 3, 7, 5), (0, 1, 0), 0.58),
    "top": ((4, 5, 7, 6), (0, 0, 1), 0.95),
}


class FrontRenderer:
    """Renders one video's frames from the ego's windshield (`render`) and boxes vehicles in them
    (`box`); `geometry` and `style` are fixed for the video."""

    def __init__(
        self,
        road: Any,
        geometry: CameraGeometry,
        style: Style,
        image_size: tuple[int, int],
        seed: int = 0,
    ) -> None:
        self.size = (int(image_size[0]), int(image_size[1]))
        self.camera = PinholeCamera(
            geometry, (self.size[0] * SUPERSAMPLE, self.size[1] * SUPERSAMPLE)
        )
        self.style, self.rng = style, np.random.default_rng(seed)
        tint, zenith, haze = TINTS[style.time_of_day]
        self._gain = style.brightness * np.array(tint)
        self.haze = self._paint(haze)
        self.mesh = road_mesh(road, style, self._paint)
        self._background = self._sky_and_ground(self._paint(zenith))
        self._fog = self._fog_by_row()
        self._shadow = _rgb(self._paint(style.road) * 0.45)
        self._glass, self._amber = (
            _rgb(self._paint((28, 32, 40))),
            _rgb(self._paint((255, 170, 20))),
        )
        self._lamps = {
            name: _rgb(self._paint(rgb))
            for name, rgb in (
                ("head", (230, 230, 210)),
                ("brake", (255, 40, 40)),
                ("tail", (110, 20, 20)),
            )
        }
        self._noise = np.round(self.rng.normal(0.0, style.noise, (NOISE_FIELDS, *self.size, 3)))
        self._looks: dict[int, tuple[np.ndarray, float]] = {}  # id(vehicle) -> (paint, height)

    def _paint(self, rgb: Any) -> np.ndarray:
        """An RGB colour under the video's brightness and tint."""
        return np.clip(np.asarray(rgb, dtype=np.float32) * self._gain, 0, 255)

    def _sky_and_ground(self, zenith: np.ndarray) -> np.ndarray:
        """The supersampled backdrop: sky fading to haze above the horizon, ground below it."""
        rows, cols = self.camera.height, self.camera.width
        v = np.arange(rows, dtype=np.float32)[:, None]
        horizon = self.camera.horizon_row
        up = np.clip((horizon - v) / max(rows * 0.6, 1.0), 0.0, 1.0)  # 0 at the horizon
        sky = self.haze + (zenith - self.haze) * np.sqrt(up)
        down = np.clip((v - horizon) / max(rows * 0.5, 1.0), 0.0, 1.0)
        ground = self._paint(self.style.ground)
        ground = self.haze + (ground - self.haze) * np.minimum(1.0, 0.25 + 2.0 * down)
        image = np.where(v < horizon, sky, ground)
        return np.repeat(image[:, None, :], cols, axis=1).round().astype(np.uint8)

    def _fog_by_row(self) -> np.ndarray:
        """Per output row, how much the haze veils the ground seen there (aerial perspective:
        1 - exp(-distance / FOG_DISTANCE)); 0 above the horizon, whose sky has its own haze."""
        g, rows = self.camera.geometry, self.size[0]
        centre = (np.arange(rows) + 0.5) * SUPERSAMPLE  # supersampled row of each output row
        below = np.arctan((centre - self.camera.height / 2) / self.camera.focal)
        below = below + math.radians(g.pitch_deg)  # angle under the horizontal
        distance = np.where(below > 0, g.height_m / np.tan(np.maximum(below, 1e-6)), np.inf)
        fade = np.where(below > 0, 1.0 - np.exp(-distance / FOG_DISTANCE), 0.0)
        return fade.astype(np.float32)[:, None, None]

    def _look(self, vehicle: Any) -> tuple[np.ndarray, float]:
        """A vehicle's paint and height, drawn when first seen (the same for the whole video)."""
        key = id(vehicle)
        if key not in self._looks:
            if type(vehicle).__name__ == "Obstacle":
                self._looks[key] = (self._paint((200, 90, 30)), 1.0)  # a construction barrier
            else:
                paint = CAR_COLOURS[int(self.rng.integers(len(CAR_COLOURS)))]
                self._looks[key] = (self._paint(paint), float(self.rng.uniform(1.4, 1.9)))
        return self._looks[key]

    def render(self, ego: Any, others: list[Any], time: float) -> np.ndarray:
        """The frame [H, W, 3] uint8 from `ego`'s windshield at simulation time `time` (s)."""
        self.camera.pose(ego.position, ego.heading)
        image = Image.fromarray(self._background)
        draw = ImageDraw.Draw(image)
        self._draw_road(draw)
        for depth, vehicle in self._in_view(others):  # far to near
            self._draw_vehicle(draw, vehicle, time, details=depth < DETAIL_RANGE)
        frame = np.asarray(image.reduce(SUPERSAMPLE), dtype=np.float32)
        frame += (self.haze - frame) * self._fog
        if self.style.noise > 0:
            frame += self._noise[int(self.rng.integers(NOISE_FIELDS))]
        return np.clip(frame + 0.5, 0, 255).astype(np.uint8)

    def _in_view(self, others: list[Any]) -> list[tuple[float, Any]]:
        """(depth, vehicle) of the vehicles whose box may be in the frame, farthest first."""
        if not others:
            return []
        centres = np.array([[*v.position, 0.0] for v in others])
        x, _, z = self.camera.to_camera(centres).T
        reach = np.array([math.hypot(v.LENGTH, v.WIDTH) / 2 for v in others])
        slope = self.camera.width / 2 / self.camera.focal  # tan(half the field of view)
        keep = (z > -reach) & (z < DRAW_RANGE) & (np.abs(x) - reach < (z + reach) * slope)
        order = np.argsort(-z[keep], kind="stable")
        kept = np.flatnonzero(keep)[order]
        return [(float(z[i]), others[i]) for i in kept]

    def _polygon(self, draw: ImageDraw.ImageDraw, points: np.ndarray, fill: tuple) -> None:
        """Fill a convex polygon given in camera coordinates (clipped to the near plane)."""
        points = clip_near(points, NEAR)
        if len(points) >= 3:
            draw.polygon(self.camera.project(points).ravel().tolist(), fill=fill)

    def _draw_road(self, draw: ImageDraw.ImageDraw) -> None:
        mesh, camera = self.mesh, self.camera
        reach = np.hypot(*(mesh.centres - camera.position[:2]).T) - mesh.radii
        chosen = np.flatnonzero(reach < mesh.ranges)
        quads = camera.to_camera(mesh.quads[chosen])  # [M, 4, 3]
        depth = quads[:, :, 2]
        whole = (depth >= NEAR).all(axis=1)
        pixels = iter(camera.project(quads[whole]).reshape(-1, 8).tolist())
        for i in range(len(chosen)):
            fill = mesh.colours[chosen[i]]
            if whole[i]:
                draw.polygon(next(pixels), fill=fill)
            elif (depth[i] >= NEAR).any():
                self._polygon(draw, quads[i], fill)

    def _draw_vehicle(
        self, draw: ImageDraw.ImageDraw, vehicle: Any, time: float, details: bool
    ) -> None:
        """Shadow, then the faces that turn towards the camera, each with its `details`."""
        paint, height = self._look(vehicle)
        shadow = _SHADOW * (vehicle.LENGTH, vehicle.WIDTH, 0.0)
        self._polygon(draw, self._to_camera(vehicle, shadow), self._shadow)
        corners = self._corners(vehicle, height)
        c, s = math.cos(vehicle.heading), math.sin(vehicle.heading)
        for name, (ids, (a, b, up), shade) in _FACES.items():
            quad = corners[list(ids)]
            outward = np.array([a * c - b * s, a * s + b * c, up])
            if float(outward @ (self.camera.position - quad.mean(axis=0))) <= 0:
                continue  # back face
            self._polygon(draw, self.camera.to_camera(quad), _rgb(paint * shade))
            if details and name != "top" and type(vehicle).__name__ != "Obstacle":
                for local, colour in self._details(vehicle, name, height, time):
                    self._polygon(draw, self._to_camera(vehicle, local), colour)

    def _details(
        self, vehicle: Any, face: str, height: float, time: float
    ) -> list[tuple[np.ndarray, tuple[int, int, int]]]:
        """Rectangles on a face, in the vehicle's (along, across, up) metres: a window band, and
        on the rear and front the lamps (tail lights, indicators, headlights)."""
        half_l, half_w = vehicle.LENGTH / 2, vehicle.WIDTH / 2
        glass, band = self._glass, (0.62 * height, 0.9 * height)
        if face in ("left", "right"):
            y = -half_w if face == "left" else half_w
            return [(_rectangle((-half_l + 0.8, half_l - 1.2), (y, y), band), glass)]
        x = -half_l if face == "rear" else half_l
        found = [(_rectangle((x, x), (-half_w + 0.2, half_w - 0.2), band), glass)]
        lamp = self._lamp(vehicle, face)
        blinking = self._indicating(vehicle, time) if face == "rear" else 0
        for side in (-1, 1):
            outer = side * (half_w - 0.05)
            lamp_span = (outer, side * (half_w - 0.4))
            found.append((_rectangle((x, x), lamp_span, (0.45 * height, 0.55 * height)), lamp))
            if blinking == side:
                span = (outer, side * (half_w - 0.25))
                found.append(
                    (_rectangle((x, x), span, (0.33 * height, 0.44 * height)), self._amber)
                )
        return found

    def _lamp(self, vehicle: Any, face: str) -> tuple[int, int, int]:
        """Headlights, or tail lights: bright while the vehicle brakes."""
        if face == "front":
            return self._lamps["head"]
        braking = float(getattr(vehicle, "action", {}).get("acceleration", 0.0)) < BRAKE_LIGHT
        return self._lamps["brake" if braking else "tail"]

    def _indicating(self, vehicle: Any, time: float) -> int:
        """-1 / +1 while a vehicle changes to the left / right lane and its lamp is lit, else 0."""
        target = getattr(vehicle, "target_lane_index", None)
        lane = getattr(vehicle, "lane_index", None)
        if target is None or lane is None or target[2] == lane[2]:
            return 0
        if (time * BLINK_HZ) % 1.0 >= 0.5:
            return 0
        return -1 if target[2] < lane[2] else 1

    def _to_camera(self, vehicle: Any, local: np.ndarray) -> np.ndarray:
        """Points [N, 3] in a vehicle's (along, across, up) frame -> camera coordinates."""
        c, s = math.cos(vehicle.heading), math.sin(vehicle.heading)
        x = vehicle.position[0] + local[:, 0] * c - local[:, 1] * s
        y = vehicle.position[1] + local[:, 0] * s + local[:, 1] * c
        return self.camera.to_camera(np.stack([x, y, local[:, 2]], axis=1))

    def _corners(self, vehicle: Any, height: float) -> np.ndarray:
        """World corners [8, 3] of a vehicle's box (order of `_CORNERS`)."""
        c, s = math.cos(vehicle.heading), math.sin(vehicle.heading)
        along = _CORNERS[:, 0] * vehicle.LENGTH / 2
        across = _CORNERS[:, 1] * vehicle.WIDTH / 2
        x = vehicle.position[0] + along * c - across * s
        y = vehicle.position[1] + along * s + across * c
        return np.stack([x, y, _CORNERS[:, 2] * height], axis=1)

    def box(self, vehicle: Any) -> list[float] | None:
        """A vehicle's image box [left, top, right, bottom] as fractions of the width and height
        (clipped to the image), or None when no part of it is in front of the camera and inside
        the image. Call after `render` of the same state (it uses the camera's pose)."""
        corners = self.camera.to_camera(self._corners(vehicle, self._look(vehicle)[1]))
        corners = corners[corners[:, 2] >= NEAR]
        if not len(corners):
            return None
        u, v = self.camera.project(corners).T
        size = np.array(
            [self.camera.width, self.camera.height, self.camera.width, self.camera.height]
        )
        box = np.clip(np.array([u.min(), v.min(), u.max(), v.max()]) / size, 0.0, 1.0)
        if box[2] <= box[0] or box[3] <= box[1]:
            return None
        return [round(float(b), 4) for b in box]


def _rectangle(along: tuple, across: tuple, up: tuple) -> np.ndarray:
    """A vertical rectangle [4, 3] in a vehicle's frame: on a face at fixed `along` (or fixed
    `across`), spanning the other coordinate and `up` (metres)."""
    if along[0] == along[1]:
        (a0, a1), (b0, b1) = (along[0],) * 2, across
        return np.array([(a0, b0, up[0]), (a1, b1, up[0]), (a1, b1, up[1]), (a0, b0, up[1])])
    (a0, a1), b = along, across[0]
    return np.array([(a0, b, up[0]), (a1, b, up[0]), (a1, b, up[1]), (a0, b, up[1])])


# a shadow a little larger than the footprint, in units of the vehicle's length and width
_SHADOW = np.array([(-0.54, -0.56, 0.0), (0.54, -0.56, 0.0), (0.54, 0.56, 0.0), (-0.54, 0.56, 0.0)])
