"""A pinhole camera behind the ego's windshield: geometry settings, their per-video variation,
and the projection of world points (highway-env's metres) into the image.

Frames. highway-env's world is a top view with x east and y pointing *down* the screen, so a car
heading along +x has +y on its right. The ego frame is (forward, right, up) from the ego's centre;
the camera sits `forward_m` ahead of it (the windshield), `lateral_m` to its right and `height_m`
above the ground, turned `yaw_deg` to the right and tilted `pitch_deg` down. Camera coordinates
are the usual (x right, y down, z along the optical axis); pixels are (column, row) with the
principal point at the image centre and square pixels.

Defaults: the published calibrations of the front cameras the importers read (devkit facts, see
`docs/data.md#front-camera-geometry`): horizontal field of view 65 deg (comma2k19's road camera,
910 px focal length at 1164 px width: 65.2 deg; nuScenes CAM_FRONT, ~1266 px at 1600 px: 64.6 deg;
KITTI's rectified colour camera, 721.5 px at 1242 px: 81.5 deg), mount height 1.4 m (comma2k19
~1.2 m, nuScenes ~1.5 m, KITTI 1.65 m), level pitch. `DASHCAM_RANGES` spans those cameras: a model
trained on one part of it can be tested on another.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np

from tritemporal.config import check_camera_geometry

NEAR = 0.3  # m: polygons are clipped to depth >= NEAR before projection
# The front cameras of the datasets the importers read: (width px, height px, focal px, mount
# height m), from their devkits and papers (docs/data.md#front-camera-geometry cites each). BDD100K
# publishes no calibration (phones, mounted anyhow); its field of view is estimated at 55-60 deg.
REAL_CAMERAS = {
    "comma2k19": (1164, 874, 910.0, 1.22),  # openpilot's EON road camera; height: its model's
    "nuscenes_cam_front": (1600, 900, 1266.4, 1.51),  # calibrated_sensor, ground-referenced
    "kitti_cam2": (1242, 375, 721.5, 1.65),  # rectified P_rect_02 (2011_09_26); setup figure
}
# per-video variation (uniform): real dash-cam geometries, from comma2k19 to KITTI
DASHCAM_RANGES = {
    "height_m": (1.2, 1.7),
    "pitch_deg": (-3.0, 3.0),
    "yaw_deg": (-2.0, 2.0),
    "hfov_deg": (55.0, 85.0),
}


@dataclass(frozen=True)
class CameraGeometry:
    """Where the camera sits on the ego and how it looks (metres, degrees)."""

    height_m: float = 1.4
    pitch_deg: float = 0.0  # > 0 tilts the camera down
    yaw_deg: float = 0.0  # > 0 turns it to the right
    hfov_deg: float = 65.0  # horizontal field of view
    forward_m: float = 0.5  # ahead of the ego's centre (a 5 m car's windshield)
    lateral_m: float = 0.0  # right of the ego's centre line

    def validate(self, where: str = "camera") -> None:
        """Raise ValueError naming the setting when a value is outside what a car can carry."""
        check_camera_geometry(asdict(self), where)

    def varied(self, rng: np.random.Generator) -> CameraGeometry:
        """A copy with height, pitch, yaw and field of view drawn from `DASHCAM_RANGES`."""
        draws = {k: round(float(rng.uniform(*span)), 3) for k, span in DASHCAM_RANGES.items()}
        return replace(self, **draws)

    def as_dict(self) -> dict[str, float]:
        """The settings, as recorded in an annotation's `source.camera`."""
        return asdict(self)


class PinholeCamera:
    """Projects world points for one ego pose at a time (`pose`), in an image of `size` (H, W)."""

    def __init__(self, geometry: CameraGeometry, size: tuple[int, int]) -> None:
        self.geometry, (self.height, self.width) = geometry, size
        self.focal = self.width / 2 / math.tan(math.radians(geometry.hfov_deg) / 2)
        pitch, yaw = math.radians(geometry.pitch_deg), math.radians(geometry.yaw_deg)
        # rows: camera x (right), y (down), z (optical axis), in ego (forward, right, up)
        look = np.array([math.cos(pitch) * math.cos(yaw), math.cos(pitch) * math.sin(yaw)])
        self._rotation = np.array(
            [
                [-math.sin(yaw), math.cos(yaw), 0.0],
                [
                    -math.sin(pitch) * math.cos(yaw),
                    -math.sin(pitch) * math.sin(yaw),
                    -math.cos(pitch),
                ],
                [*look, -math.sin(pitch)],
            ]
        )
        self._world = np.eye(4)
        self.position = np.zeros(3)

    @property
    def horizon_row(self) -> float:
        """Image row of the horizon (level ground at infinity); < 0 when above the image."""
        return self.height / 2 - self.focal * math.tan(math.radians(self.geometry.pitch_deg))

    def pose(self, position: np.ndarray, heading: float) -> None:
        """Place the camera on an ego at `position` (x, y) with `heading` (rad)."""
        g = self.geometry
        forward = np.array([math.cos(heading), math.sin(heading)])
        right = np.array([-math.sin(heading), math.cos(heading)])
        x, y = np.asarray(position, dtype=float) + g.forward_m * forward + g.lateral_m * right
        self.position = np.array([x, y, g.height_m])
        ego = np.array([[*forward, 0.0], [*right, 0.0], [0.0, 0.0, 1.0]])  # world -> ego rows
        self._world = self._rotation @ ego  # world offset -> camera coordinates

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """World points [..., 3] (x, y, height) -> camera coordinates [..., 3]."""
        return (np.asarray(points, dtype=float) - self.position) @ self._world.T

    def project(self, camera_points: np.ndarray) -> np.ndarray:
        """Camera coordinates [..., 3] with depth > 0 -> pixel (column, row) [..., 2]."""
        z = camera_points[..., 2:3]
        return self.focal * camera_points[..., :2] / z + np.array([self.width, self.height]) / 2

    def in_view(self, point: np.ndarray, near: float, far: float, margin_px: float = 0.0) -> bool:
        """Whether world `point` lies in front within [near, far] m and inside the image's columns
        (rows too, widened by `margin_px` on every side)."""
        camera_point = self.to_camera(point)
        if not near <= camera_point[2] <= far:
            return False
        u, v = self.project(camera_point)
        m = margin_px
        return -m <= u <= self.width + m and -m <= v <= self.height + m


def kept_fov(width: int, height: int, focal: float, out_hw: tuple[int, int]) -> tuple[float, float]:
    """(horizontal, vertical) field of view in degrees that a camera's frames keep after the
    clips' resize-to-cover and centre crop to `out_hw` (`data.transforms.center_box`): the
    geometry a model trained on simulated frames of that size meets in real ones."""
    scale = max(out_hw[0] / height, out_hw[1] / width)
    kept_w, kept_h = min(width, out_hw[1] / scale), min(height, out_hw[0] / scale)
    return (
        2 * math.degrees(math.atan(kept_w / 2 / focal)),
        2 * math.degrees(math.atan(kept_h / 2 / focal)),
    )


def clip_near(polygon: np.ndarray, near: float = NEAR) -> np.ndarray:
    """The part of a convex polygon [N, 3] (camera coordinates) at depth >= `near`
    (Sutherland-Hodgman against one plane); [0, 3] when all of it is closer."""
    depth = polygon[:, 2]
    if (depth >= near).all():
        return polygon
    if not (depth >= near).any():
        return polygon[:0]
    kept = []
    for a, b, da, db in zip(
        polygon, np.roll(polygon, -1, 0), depth, np.roll(depth, -1), strict=True
    ):
        if da >= near:
            kept.append(a)
        if (da >= near) != (db >= near):
            kept.append(a + (b - a) * (near - da) / (db - da))
    return np.array(kept)
