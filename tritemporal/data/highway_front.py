"""The front (windshield) camera of `make-clips --camera front`: what the frames show and what the
ego's rules may react to, with the same interface as the top-down camera in `data/highway.py`.

What a front camera cannot show, and how the labels stay predictable:
- Vehicles beside and behind the ego. The ego still checks the target lane behind it before a
  lane change (its mirrors, `MIRROR_RANGE`), or it would cut into traffic; that check can only
  delay a change whose cause is in view: a slower leader ahead within the reaction distance, and
  an adjacent lane that is free as far as the camera sees it.
- The ego's own indicator. On the top-down view it announced the side of a lane change; here the
  side follows the traffic rule instead (overtake on the left when that lane is free, else on the
  right; keep right when the right lane ahead is empty), which the view shows.
- Occlusion: a vehicle hidden behind another still counts as seen (a short-range radar would see
  it); at the ego's reaction distances the leader is never hidden.
The scene facts follow the view: lane states count only vehicles inside the frame, and the leader
is the nearest visible vehicle ahead in the ego's lane, with its image box (`leader_box`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tritemporal.data.front_camera import CameraGeometry
from tritemporal.data.front_render import FrontRenderer, Style

SEE_NEAR, SEE_FAR = 1.0, 90.0  # m of depth within which a vehicle in the frame counts as seen
MIRROR_RANGE = 40.0  # m behind / beside within which the ego's mirrors see a vehicle
LANE_LOOK = 15.0  # m ahead at which a lane's centre must be in the frame to count as in view
EYE_HEIGHT = 0.75  # m: a vehicle's point tested for visibility (its box's middle)


@dataclass(frozen=True)
class FrontSettings:
    """The front camera of a corpus: a fixed geometry and look, or either drawn per video."""

    geometry: CameraGeometry = field(default_factory=CameraGeometry)
    vary_geometry: bool = True  # draw height, pitch, yaw and field of view per video
    vary_look: bool = True  # draw colours, brightness, time of day and sensor noise per video

    def for_video(self, seed: int, zoom: float = 1.0) -> tuple[CameraGeometry, Style]:
        """The geometry and appearance of the video simulated with env seed `seed`."""
        rng = np.random.default_rng([seed, 29])
        # both are always drawn, in this order, so a video's look does not depend on whether
        # its geometry varies: corpora that vary one factor share the other's draws
        geometry, style = self.geometry.varied(rng), Style.varied(rng)
        geometry = geometry if self.vary_geometry else self.geometry
        style = style if self.vary_look else Style()
        if zoom != 1.0:  # a longer focal length: the field of view narrows
            half = math.atan(math.tan(math.radians(geometry.hfov_deg) / 2) / zoom)
            geometry = CameraGeometry(**{**geometry.as_dict(), "hfov_deg": 2 * math.degrees(half)})
        return geometry, style


class FrontView:
    """The ego's windshield camera over a highway-env env (the interface of `highway._Camera`)."""

    prefer_left = True  # the side of a lane change follows the traffic rule (module docstring)

    def __init__(
        self,
        env: Any,
        image_size: tuple[int, int],
        geometry: CameraGeometry,
        style: Style,
        seed: int,
    ) -> None:
        self.env = env
        self.renderer = FrontRenderer(env.road, geometry, style, image_size, seed)
        self._pose()

    def _pose(self) -> None:
        self.renderer.camera.pose(self.env.vehicle.position, self.env.vehicle.heading)

    def visible(self, pos: np.ndarray) -> bool:
        """Whether a vehicle at world `pos` is inside the frame, SEE_NEAR..SEE_FAR m ahead."""
        self._pose()
        point = np.array([*pos, EYE_HEIGHT])
        return self.renderer.camera.in_view(point, SEE_NEAR, SEE_FAR, margin_px=0.0)

    def sees(self, pos: np.ndarray) -> bool:
        """What the ego's rules may react to: the frame, or its mirrors behind and beside it."""
        ego = self.env.vehicle
        offset = np.asarray(pos) - ego.position
        ahead = offset @ np.array([math.cos(ego.heading), math.sin(ego.heading)])
        return self.visible(pos) or (ahead < 2.0 and float(np.hypot(*offset)) < MIRROR_RANGE)

    def lane_in_view(self, lane: Any, s: float) -> bool:
        """Whether `lane`'s centre LANE_LOOK m ahead of station `s` is inside the frame."""
        self._pose()
        point = np.array([*lane.position(s + LANE_LOOK, 0.0), 0.0])
        return self.renderer.camera.in_view(point, SEE_NEAR, SEE_FAR)

    def counts(self, pos: np.ndarray) -> bool:
        """Whether a vehicle counts for the lane-state facts: only what the frame shows."""
        return self.visible(pos)

    def render(self, signal: int = 0) -> np.ndarray:
        """The frame; the ego's own indicator (`signal`) is inside the car, out of view."""
        del signal
        ego = self.env.vehicle
        others = [v for v in self.env.road.vehicles if v is not ego] + list(self.env.road.objects)
        return self.renderer.render(ego, others, float(self.env.time))

    def box(self, vehicle: Any) -> list[float] | None:
        """`vehicle`'s image box in the present frame (fractions of width and height)."""
        self._pose()
        return self.renderer.box(vehicle)
