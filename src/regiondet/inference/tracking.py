"""Objects followed across frames, and an alert per object: "a lens is pointed at you".

Association is ByteTrack's (Zhang et al., ECCV 2022) two stages: confident detections are
matched to the live tracks first (Hungarian assignment on IoU, scipy), then the weak ones to
the tracks still unmatched, so a lens whose score dips for a frame keeps its track instead of
being lost; only confident detections start a track. Matching ignores the class: a phone back
called "camera" in one frame is the same lens. Roboflow's `trackers` package has ByteTrack
too, but it requires the GUI build of OpenCV, which collides with the headless OpenCV
regiondet reads video with; the association itself is these few lines.

An alert episode starts for a track once it has been seen confidently in K of its last N frames
(a weak match keeps a track alive but does not count: otherwise one confident false detection
followed by weak ones at the same spot, a sign or a window, would raise an alert). It ends only
when the lens has been out of view, matched by no detection at all, for `hold_s` seconds
(hysteresis): a lens whose detections flicker for a moment, or that leaves the frame for a
second and comes back near where it was, stays one episode. While its lens is out of view an
alerting track waits for it with a wider gate (its centre within one box size), and a second
box on the same lens (a camera also called a phone) joins the lens's track instead of starting
a track and an alert of its own.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou

from regiondet.data.overlap import overlap_of_smaller

# seconds a lens must be out of view before its alert ends
DEFAULT_HOLD_S = 2.0


@dataclass
class Track:
    id: int
    label: str
    box: np.ndarray
    best_score: float
    first_frame: int
    first_time: float
    last_frame: int
    last_time: float
    seen: deque = field(default_factory=deque)  # hit or miss per frame since the track began
    misses: int = 0  # frames in a row without a match
    alerting: bool = False
    episode_start: float = 0.0  # when its alert started (seconds)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return box_iou(torch.from_numpy(a.reshape(-1, 4)), torch.from_numpy(b.reshape(-1, 4))).numpy()


def _nearness(track: Track, box: np.ndarray) -> float:
    """How near the box's centre is to the track's: 1 on it, 0 at one box size (the larger side
    of either) away, below 0 farther."""
    a, b = track.box.astype(np.float64), box.astype(np.float64)
    gap = np.abs((a[:2] + a[2:]) / 2 - (b[:2] + b[2:]) / 2).max()
    size = max(a[2] - a[0], a[3] - a[1], b[2] - b[0], b[3] - b[1])
    return float(1 - gap / size) if size > 0 else -1.0


def _match(tracks: list[Track], boxes: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """(track index, detection index) pairs by the assignment with the largest total IoU,
    pairs under `min_iou` dropped, except that an alerting track whose lens is out of view
    takes a box near its last place (a small positive weight, larger the nearer the box, so any
    overlap ranks first)."""
    if not tracks or not len(boxes):
        return []
    iou = _iou(np.stack([t.box for t in tracks]), boxes)
    ok = iou >= min_iou
    for r, t in enumerate(tracks):
        if t.alerting and t.misses > 0:
            nearness = np.array([_nearness(t, b) for b in boxes])
            near = nearness >= 0
            ok[r] |= near
            # the nearest box first: its weight 0.5e-3 to 1e-3 by nearness (equal weights would
            # leave the choice between two near boxes to the solver's order)
            iou[r] = np.where(near, np.maximum(iou[r], 1e-3 * (1 + np.clip(nearness, 0, 1)) / 2), iou[r])
    rows, cols = linear_sum_assignment(-np.where(ok, iou, 0.0))
    return [(r, c) for r, c in zip(rows, cols, strict=True) if ok[r, c]]


class AlertTracker:
    """Tracks lenses over frames and says where each track's alert starts and ends.

    `high`: detections at this score or above start and extend tracks; those between `low`
    and `high` only extend them (ByteTrack's second stage). `k`/`n`: the rule that starts a
    track's alert. A track without an alert is dropped after `max_misses` frames unmatched; an
    alerting one after `hold_s` seconds unmatched, when its alert ends.
    """

    def __init__(
        self,
        k: int = 3,
        n: int = 5,
        high: float = 0.5,
        low: float = 0.1,
        min_iou: float = 0.2,
        max_misses: int = 10,
        hold_s: float = DEFAULT_HOLD_S,
    ):
        self.k, self.n, self.high, self.low = k, n, high, low
        self.min_iou, self.max_misses, self.hold_s = min_iou, max_misses, hold_s
        self.tracks: list[Track] = []
        self.next_id = 1

    @property
    def alert(self) -> bool:
        return any(t.alerting for t in self.tracks)

    def update(
        self, boxes: np.ndarray, scores: np.ndarray, labels: list[str], frame: int, seconds: float
    ) -> tuple[list[int], list[dict]]:
        """One frame's detections: (the track id of each detection, 0 for one too weak to be
        tracked; the events this frame raised: alert_start / alert_end)."""
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        ids = [0] * len(boxes)
        strong = np.flatnonzero(scores >= self.high)
        weak = np.flatnonzero((scores >= self.low) & (scores < self.high))
        matched: set[int] = set()
        for group in (strong, weak):
            free = [i for i, t in enumerate(self.tracks) if i not in matched]
            for r, c in _match([self.tracks[i] for i in free], boxes[group], self.min_iou):
                track, d = self.tracks[free[r]], int(group[c])
                matched.add(free[r])
                self._hit(track, boxes[d], float(scores[d]), labels[d], frame, seconds, group is strong)
                ids[d] = track.id
        for i, track in enumerate(self.tracks):
            if i not in matched:
                track.misses += 1
                track.seen.append(False)
                if len(track.seen) > self.n:
                    track.seen.popleft()
        for d in strong:
            if ids[d] != 0:
                continue
            same = self._same_lens(boxes[d])
            if same is not None:  # a second box on a lens already followed: that lens's track
                ids[d] = same.id
                continue
            track = Track(self.next_id, labels[d], boxes[d], float(scores[d]), frame, seconds, frame, seconds)
            track.seen.append(True)
            self.tracks.append(track)
            self.next_id += 1
            ids[d] = track.id
        events = []
        for track in self.tracks:
            if not track.alerting and sum(track.seen) >= self.k:
                track.alerting, track.episode_start = True, seconds
                events.append(self._event("alert_start", track, frame, seconds))
            elif track.alerting and track.misses and seconds - track.last_time >= self.hold_s - 1e-6:  # float times
                track.alerting = False
                events.append(self._event("alert_end", track, frame, seconds))
                track.misses = self.max_misses  # its lens is gone: dropped below
        self.tracks = [t for t in self.tracks if t.alerting or t.misses < self.max_misses]
        return ids, events

    def _same_lens(self, box: np.ndarray) -> Track | None:
        """The track already on this box's object this frame: overlapping it by IoU >= 0.3, or
        with at least half of the smaller box inside the other (a lens boxed inside its camera)."""
        for t in self.tracks:
            if t.misses > 0:
                continue
            if _iou(t.box, box)[0, 0] >= 0.3 or overlap_of_smaller(t.box, box) >= 0.5:
                return t
        return None

    def _hit(
        self, track: Track, box: np.ndarray, score: float, label: str, frame: int, seconds: float, strong: bool
    ) -> None:
        """A match: the track follows the box; only a confident detection counts towards the
        alert (a weak one keeps the track, and its alert, alive through a dip)."""
        track.box, track.misses = box, 0
        track.seen.append(strong)
        if len(track.seen) > self.n:
            track.seen.popleft()
        if score > track.best_score:
            track.best_score, track.label = score, label
        track.last_frame, track.last_time = frame, seconds

    def close(self, frame: int, seconds: float) -> list[dict]:
        """The end of the stream: every alert still on ends here."""
        events = [self._event("alert_end", t, frame, seconds) for t in self.tracks if t.alerting]
        self.tracks = []
        return events

    @staticmethod
    def _event(kind: str, track: Track, frame: int, seconds: float) -> dict:
        """alert_start / alert_end: the lens (track, likeliest label, best score so far), when it
        was first and last seen, and the episode's start; an end adds its end and duration (the
        lens's last sighting, not the moment the hold ran out)."""
        event = {
            "event": kind,
            "track": track.id,
            "label": track.label,
            "best_score": round(track.best_score, 4),
            "first_time_s": round(track.first_time, 3),
            "last_time_s": round(track.last_time, 3),
            "episode_start_s": round(track.episode_start, 3),
            "frame": frame,
            "time_s": round(seconds, 3),
        }
        if kind == "alert_end":
            end = max(track.last_time, track.episode_start)
            event.update(episode_end_s=round(end, 3), duration_s=round(end - track.episode_start, 3))
        return event
