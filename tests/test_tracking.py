"""The per-lens alert: ByteTrack's two-stage association and the K-of-N rule per track."""

from __future__ import annotations

import numpy as np

from regiondet.inference.tracking import AlertTracker

A = [100, 100, 160, 200]  # a phone on the left
B = [400, 120, 470, 230]  # a camera on the right


def run(tracker: AlertTracker, frames: list[list[tuple[list[float], float, str]]]) -> tuple[list, list]:
    ids, events = [], []
    for i, dets in enumerate(frames):
        boxes = np.array([d[0] for d in dets], np.float32).reshape(-1, 4)
        got, ev = tracker.update(boxes, np.array([d[1] for d in dets]), [d[2] for d in dets], i, i / 10)
        ids.append(got)
        events += ev
    return ids, events


def shifted(box: list[float], dx: float) -> list[float]:
    return [box[0] + dx, box[1], box[2] + dx, box[3]]


def test_a_weak_frame_keeps_the_track_and_a_new_label_is_the_same_lens():
    tracker = AlertTracker(k=3, n=5, high=0.5, low=0.1)
    frames = [
        [(shifted(A, 5 * i), s, lab)]
        for i, (s, lab) in enumerate([(0.9, "phone"), (0.3, "phone"), (0.8, "camera"), (0.95, "phone")])
    ]
    ids, events = run(tracker, frames)
    assert ids == [[1], [1], [1], [1]]  # the 0.3 frame matched in the second stage; the label change kept it
    # the weak frame kept the track but does not count: the third confident sighting starts the alert
    assert [(e["event"], e["frame"], e["label"]) for e in events] == [("alert_start", 3, "phone")]
    assert events[0]["best_score"] == 0.95 and events[0]["first_time_s"] == 0.0


def test_two_lenses_two_tracks_and_a_one_frame_blip_raises_nothing():
    tracker = AlertTracker(k=2, n=3, high=0.5, low=0.1, max_misses=3, hold_s=0.25)
    frames = [
        [(A, 0.9, "phone")],
        [(A, 0.9, "phone"), (B, 0.7, "camera")],
        [(A, 0.9, "phone"), (B, 0.8, "camera")],
        [(A, 0.9, "phone"), ([700, 50, 720, 80], 0.6, "phone")],  # a blip, once
        [(A, 0.9, "phone")],
        [(A, 0.9, "phone")],
        [(A, 0.9, "phone")],
    ]
    ids, events = run(tracker, frames)
    assert ids[1] == [1, 2] and ids[3] == [1, 3]
    assert [(e["event"], e["track"], e["frame"]) for e in events] == [
        ("alert_start", 1, 1),
        ("alert_start", 2, 2),
        ("alert_end", 2, 5),  # its lens out of view for the hold (0.25 s: frames 3, 4 and 5)
    ]
    assert events[2]["episode_start_s"] == 0.2 and events[2]["episode_end_s"] == 0.2
    assert tracker.alert and [t.id for t in tracker.tracks] == [1]  # 2 ended, the blip dropped after 3 misses
    ended = tracker.close(7, 0.7)
    assert [(e["event"], e["track"], e["last_time_s"]) for e in ended] == [("alert_end", 1, 0.6)]
    assert ended[0]["episode_start_s"] == 0.1 and ended[0]["duration_s"] == 0.5
    assert not tracker.alert


def test_a_lens_in_view_with_the_models_dropouts_is_one_alert():
    """11 s of one phone at 10 fps, its detections missing now and then (up to 1 s at once),
    weak in others, the box wandering: one alert_start, and its end only when the clip ends."""
    rng = np.random.default_rng(0)
    tracker = AlertTracker(k=3, n=5, high=0.5, low=0.1)
    frames, x, gap = [], 0.0, 0
    for _ in range(110):
        x += rng.normal(0, 4)
        if gap == 0 and rng.random() < 0.05:
            gap = int(rng.integers(3, 11))  # a dropout of 0.3-1.0 s
        if gap:
            gap -= 1
            frames.append([])
        else:
            frames.append([(shifted(A, x), float(rng.choice([0.9, 0.7, 0.3])), str(rng.choice(["phone", "camera"])))])
    assert sum(1 for f in frames if not f) >= 10  # the clip does have dropouts
    _, events = run(tracker, frames)
    assert [e["event"] for e in events] == ["alert_start"]
    assert [e["event"] for e in tracker.close(110, 11.0)] == ["alert_end"]


def test_a_lens_back_near_its_place_within_the_hold_is_the_same_episode_and_after_it_a_new_one():
    tracker = AlertTracker(k=2, n=3, high=0.5, low=0.1, hold_s=1.0)
    seen = [(A, 0.9, "phone")]
    moved = [(shifted(A, 45), 0.9, "phone")]  # back 45 px further right: IoU with A under 0.2
    frames = [seen] * 3 + [[]] * 8 + [moved] * 3 + [[]] * 12 + [seen] * 3
    ids, events = run(tracker, frames)
    assert ids[11] == [1]  # the returning lens kept its track
    assert [(e["event"], e["track"], e["frame"]) for e in events] == [
        ("alert_start", 1, 1),
        ("alert_end", 1, 23),  # last seen at frame 13 (1.3 s), hold 1 s
        ("alert_start", 2, 27),
    ]
    assert events[1]["episode_end_s"] == 1.3 and events[1]["duration_s"] == 1.2


def test_a_camera_also_boxed_as_a_phone_is_one_lens_with_one_alert():
    inner = [A[0] + 10, A[1] + 20, A[2] - 10, A[3] - 30]
    tracker = AlertTracker(k=2, n=3, high=0.5, low=0.1)
    ids, events = run(tracker, [[(A, 0.8, "camera"), (inner, 0.7, "phone")]] * 4)
    assert all(i == [1, 1] for i in ids) and [t.id for t in tracker.tracks] == [1]
    assert [e["event"] for e in events] == ["alert_start"]


def test_weak_detections_alone_never_start_a_track():
    tracker = AlertTracker(k=1, n=1, high=0.5, low=0.1)
    ids, events = run(tracker, [[(A, 0.3, "phone")], [(A, 0.4, "phone")]])
    assert ids == [[0], [0]] and events == [] and not tracker.tracks
