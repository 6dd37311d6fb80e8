"""Annotation schema: version 1 files still load; version 2 adds per-frame scene facts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tritemporal.data.annotations import (
    SCHEMA_VERSION,
    AnnotationError,
    Event,
    load_annotation,
    parse_annotation,
    write_annotation,
)

EGO = {"time": [0.0, 0.5, 1.0], "speed": [20.0, 21.0, 22.0]}
SCENE = {
    "left_lane": ["free", "occupied", "no_lane"],
    "right_lane": ["no_lane", "free", "free"],
    "leader_gap": [12.5, None, 8.0],
    "leader_closing": [1.5, None, -0.5],
}


def test_version_1_files_still_load(tmp_path: Path) -> None:
    path = tmp_path / "old.json"
    events = [{"maneuver": "brake", "start": 0.0, "end": 1.0}]
    path.write_text(json.dumps({"schema_version": 1, "events": events, "ego": EGO}))
    ann = load_annotation(path)
    assert ann.events == (Event("brake", 0.0, 1.0),) and ann.scene == {}
    assert ann.scene_at(torch.tensor([0.2])) == {}
    with pytest.raises(AnnotationError, match="unknown fields"):  # scene came with version 2
        parse_annotation({"schema_version": 1, "ego": EGO, "scene": SCENE}, path)


def test_scene_round_trip_and_lookup(tmp_path: Path) -> None:
    path = tmp_path / "clip.json"
    write_annotation(path, [Event("brake", 0.0, 1.0)], EGO, {"generator": "test"}, scene=SCENE)
    assert json.loads(path.read_text())["schema_version"] == SCHEMA_VERSION == 3
    ann = load_annotation(path)
    assert ann.scene == {name: tuple(values) for name, values in SCENE.items()}
    at = ann.scene_at(torch.tensor([-1.0, 0.0, 0.7, 5.0]))  # the last frame at or before each
    assert at["left_lane"] == ["free", "free", "occupied", "no_lane"]
    assert at["leader_gap"] == [12.5, 12.5, None, 8.0]


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"left_lane": ["free", "busy", "free"]}, "left_lane values must be one of free"),
        ({"leader_gap": [1.0, 2.0]}, "one entry per ego.time"),
        ({"leader_gap": [1.0, None, float("nan")]}, "finite numbers or null"),
        ({"leader_closing": [1.0, 0.0, -0.5]}, "null on the same frames"),
        ({"extra": [1, 2, 3]}, "exactly left_lane, right_lane"),
    ],
)
def test_bad_scene_names_the_field(change: dict, match: str) -> None:
    data = {"schema_version": 2, "ego": EGO, "scene": {**SCENE, **change}}
    with pytest.raises(AnnotationError, match=match):
        parse_annotation(data, Path("clip.json"))


def test_scene_needs_ego_time() -> None:
    with pytest.raises(AnnotationError, match=r"scene needs an ego\.time"):
        parse_annotation({"schema_version": 2, "scene": SCENE}, Path("clip.json"))
