"""Maneuver labels from ego series (`tritemporal label --from-ego`): each rule on planted series,
hand labels winning, the schema-3 `source` field, bad input, and agreement scoring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tritemporal.cli import main
from tritemporal.config import AutoLabelConfig
from tritemporal.data.annotations import (
    Annotation,
    AnnotationError,
    Event,
    load_annotation,
    parse_annotation,
)
from tritemporal.data.ego_labels import agreement, ego_events, merge_events, relabel

CFG = AutoLabelConfig()
T = np.arange(0, 20, 0.1)  # 10 Hz, 20 s


def _kinds(events: list[Event]) -> list[str]:
    return [e.maneuver for e in events]


def _bump(center: float, width: float, amplitude: float) -> np.ndarray:
    """A half-sine heading excursion: the car turns out, then straightens parallel again."""
    x = (T - center + width / 2) / width
    return np.where((x > 0) & (x < 1), amplitude * np.sin(np.pi * x), 0.0)


def test_brake_and_stop_come_from_speed_alone() -> None:
    speed = np.interp(T, [0, 5, 8, 12, 13, 20], [15, 15, 0.5, 0.5, 0.5, 0.5])
    events = ego_events(T, {"speed": speed}, CFG)
    assert _kinds(events) == ["brake", "stop"], events
    brake, stop = events
    assert 4.5 <= brake.start <= 5.3 and 7.5 <= brake.end <= 8.5
    assert stop.start == pytest.approx(7.9, abs=0.3) and stop.end == pytest.approx(19.9, abs=0.1)
    assert all(e.source == "auto" for e in events)
    gentle = np.interp(T, [0, 5, 15, 20], [15, 15, 13.5, 13.5])  # 1.5 m/s lost: no brake
    assert ego_events(T, {"speed": gentle}, CFG) == []


def test_a_short_hard_brake_keeps_its_whole_drop() -> None:
    speed = np.interp(T, [0, 10, 10.6, 20], [8.5, 8.5, 5.0, 5.0])  # 3.5 m/s in 0.6 s
    assert _kinds(ego_events(T, {"speed": speed}, CFG)) == ["brake"]


@pytest.mark.parametrize("sign, name", [(1, "turn_right"), (-1, "turn_left")])
def test_turns_from_heading_or_yaw_rate(sign: int, name: str) -> None:
    speed = np.full_like(T, 8.0)
    heading = sign * np.interp(T, [0, 6, 10, 20], [0, 0, np.pi / 2, np.pi / 2])
    for series in ({"heading": heading}, {"yaw_rate": np.gradient(heading, T)}):
        events = ego_events(T, {"speed": speed, **series}, CFG)
        assert _kinds(events) == [name], (series.keys(), events)
        assert events[0].start == pytest.approx(6, abs=0.4)
        assert events[0].end == pytest.approx(10, abs=0.4)


@pytest.mark.parametrize("sign, name", [(1, "lane_change_right"), (-1, "lane_change_left")])
def test_lane_changes_from_the_heading_against_the_road(sign: int, name: str) -> None:
    speed = np.full_like(T, 25.0)
    road = 0.3 + 0.004 * T  # a gentle curve: the road's own heading is not a lane change
    heading = road + sign * _bump(10.0, 3.0, 0.075)  # 25 m/s, 4.3 deg for 3 s: ~3.6 m across
    events = ego_events(T, {"speed": speed, "heading": heading}, CFG)
    assert _kinds(events) == [name], events
    assert 8.4 <= events[0].start <= 9.5 and 10.5 <= events[0].end <= 11.6
    small = road + sign * _bump(10.0, 3.0, 0.03)  # 1.4 m across: drifting in the lane
    assert ego_events(T, {"speed": speed, "heading": small}, CFG) == []


def test_a_hole_in_the_series_splits_it() -> None:
    time = np.concatenate([np.arange(0, 5, 1.0), np.arange(10, 15, 1.0)])
    speed = np.concatenate([np.full(5, 15.0), np.full(5, 5.0)])  # the drop is in the hole
    assert ego_events(time, {"speed": speed}, CFG) == []
    gps = np.arange(0, 20, 1.0)  # 1 Hz GPS fixes still show a brake
    assert _kinds(
        ego_events(gps, {"speed": np.interp(gps, [0, 8, 12, 20], [14, 14, 6, 6])}, CFG)
    ) == ["brake"]


def test_bad_series_are_named() -> None:
    with pytest.raises(ValueError, match="no ego speed series"):
        ego_events(T, {"heading": np.zeros_like(T)}, CFG)
    with pytest.raises(ValueError, match="strictly increasing"):
        ego_events(np.array([0.0, 1.0, 1.0]), {"speed": np.ones(3)}, CFG)
    with pytest.raises(ValueError, match=r"data\.auto_labels\.brake_drop=0"):
        AutoLabelConfig(brake_drop=0).validate()


def test_hand_events_win() -> None:
    hand = Event("lane_change_left", 2.0, 4.0)
    auto = [Event("brake", 3.0, 5.0, "auto"), Event("stop", 6.0, 7.0, "auto")]
    stale = Event("turn_left", 8.0, 9.0, "auto")
    merged = merge_events([hand, stale], auto)
    assert merged == [hand, Event("stop", 6.0, 7.0, "auto")]  # over the hand event: not written
    note = Annotation(events=(Event("brake", 0.0, 5.0, "auto"), Event("stop", 4.0, 4.5)))
    assert note.maneuver_between(3.0, 5.0) == "stop"  # hand beats a larger auto overlap
    assert note.maneuver_between(0.0, 2.0) == "brake"
    assert note.maneuver_between(6.0, 7.0) == "keep_lane"


def test_schema_3_event_source() -> None:
    path = Path("clip.json")
    events = [{"maneuver": "brake", "start": 1, "end": 2, "source": "auto"}]
    note = parse_annotation({"schema_version": 3, "events": events}, path)
    assert note.events[0].source == "auto"
    with pytest.raises(AnnotationError, match="must have exactly maneuver, start, end"):
        parse_annotation({"schema_version": 2, "events": events}, path)  # no source before 3
    events[0]["source"] = "robot"
    with pytest.raises(AnnotationError, match=r"events\[0\].source must be one of hand, auto"):
        parse_annotation({"schema_version": 3, "events": events}, path)


def _annotation(path: Path, events: list[dict], ego: dict | None, version: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"schema_version": version, "events": events, "source": {"generator": "test"}}
    if ego is not None:
        data["ego"] = ego
    path.write_text(json.dumps(data))


def test_relabel_rewrites_files_keeping_hand_labels(tmp_path: Path, capsys) -> None:
    speed = np.interp(T, [0, 10, 13, 20], [20, 20, 12, 12])
    ego = {"time": T.round(3).tolist(), "speed": speed.round(3).tolist()}
    hand = {"maneuver": "lane_change_left", "start": 1.0, "end": 3.0}
    root = tmp_path / "data"
    _annotation(root / "annotations" / "a.json", [hand], ego)
    _annotation(root / "annotations" / "sub" / "b.json", [], ego)
    _annotation(root / "annotations" / "c.json", [hand], None)  # no ego: skipped
    summary = relabel(root, CFG)
    assert summary.labelled == 2 and summary.counts["brake"] == 2 and summary.kept_hand == 1
    assert (
        summary.skipped[0][0] == "annotations/c.json" and "no ego series" in summary.skipped[0][1]
    )
    written = json.loads((root / "annotations" / "a.json").read_text())
    assert written["schema_version"] == 3 and written["source"] == {"generator": "test"}
    assert written["events"][0] == hand  # hand events are written as they were
    assert written["events"][1]["source"] == "auto" and written["events"][1]["maneuver"] == "brake"
    assert written["ego"] == ego
    before = (root / "annotations" / "a.json").read_text()
    relabel(root, CFG)  # idempotent: auto events are replaced, not added again
    assert (root / "annotations" / "a.json").read_text() == before
    with pytest.raises(AnnotationError, match=r"c\.json: no ego series"):
        relabel(root, CFG, on_error="raise")

    assert main(["label", str(root), "--from-ego", "--set", "data.auto_labels.brake_drop=30"]) == 0
    out = capsys.readouterr().out
    assert "labelled 2 annotation files; skipped 1" in out
    events = load_annotation(root / "annotations" / "a.json").events
    assert [e.source for e in events] == ["hand"]  # brake_drop=30 m/s: no brake
    assert main(["label", str(tmp_path / "nothing"), "--from-ego"]) == 2


def test_agreement_counts_overlaps_per_maneuver() -> None:
    truth = [Event("brake", 1, 2), Event("yield", 5, 6), Event("lane_change_left", 8, 10)]
    auto = [Event("brake", 1.5, 2.5, "auto"), Event("brake", 5.2, 5.8, "auto"),
            Event("brake", 12, 13, "auto")]  # fmt: skip
    scores = agreement([(truth, auto)])
    assert scores["brake"] == {
        "true_events": 2, "auto_events": 3, "recall": 1.0, "precision": pytest.approx(2 / 3)
    }  # fmt: skip
    assert scores["lane_change_left"]["recall"] == 0.0
    assert scores["lane_change_left"]["precision"] is None


def test_score_compares_derived_events_with_hand_labels_and_writes_nothing(
    tmp_path: Path, capsys
) -> None:
    speed = np.interp(T, [0, 10, 13, 20], [20, 20, 12, 12])
    ego = {"time": T.round(3).tolist(), "speed": speed.round(3).tolist()}
    truth = [{"maneuver": "yield", "start": 10.5, "end": 12.5},  # a brake to ego series
             {"maneuver": "stop", "start": 15.0, "end": 16.0}]  # fmt: skip
    path = tmp_path / "annotations" / "a.json"
    _annotation(path, truth, ego)
    before = path.read_text()
    report = tmp_path / "scores.json"
    assert main(["label", str(tmp_path), "--from-ego", "--score", "--json", str(report)]) == 0
    assert path.read_text() == before
    assert "brake" in capsys.readouterr().out
    scores = json.loads(report.read_text())["maneuvers"]
    assert scores["brake"]["recall"] == 1.0 and scores["brake"]["precision"] == 1.0
    assert scores["stop"] == {"true_events": 1, "auto_events": 0, "recall": 0.0, "precision": None}
