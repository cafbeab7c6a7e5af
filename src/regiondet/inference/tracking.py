"""Objects followed across frames, and an alert per object: "a lens is pointed at you".

Association is ByteTrack's (Zhang et al., ECCV 2022) two stages: confident detections are
matched to the live tracks first (Hungarian assignment on IoU, scipy), then the weak ones to
the tracks still unmatched, so a lens whose score dips for a frame keeps its track instead of
being lost; only confident detections start a track. Matching ignores the class: a phone back
called "camera" in one frame is the same lens. Roboflow's `trackers` package has ByteTrack
too, but it requires the GUI build of OpenCV, which collides with the headless OpenCV
regiondet reads video with; the association itself is these few lines.

An alert starts for a track once it has been seen confidently in K of its last N frames and ends
when fewer than K of its last N remain, or when the track is lost. A weak match keeps a track
alive but does not count towards its alert: otherwise one confident false detection followed
by weak ones at the same spot (a sign, a window) would raise an alert.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_iou


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


def _match(tracks: list[Track], boxes: np.ndarray, min_iou: float) -> list[tuple[int, int]]:
    """(track index, detection index) pairs by the assignment with the largest total IoU,
    pairs under `min_iou` dropped."""
    if not tracks or not len(boxes):
        return []
    iou = box_iou(torch.from_numpy(np.stack([t.box for t in tracks])), torch.from_numpy(boxes)).numpy()
    rows, cols = linear_sum_assignment(-iou)
    return [(r, c) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= min_iou]


class AlertTracker:
    """Tracks lenses over frames and says where each track's alert starts and ends.

    `high`: detections at this score or above start and extend tracks; those between `low`
    and `high` only extend them (ByteTrack's second stage). `k`/`n`: the alert rule per track.
    A track unmatched for `max_misses` frames is dropped (its alert, if any, ends then).
    """

    def __init__(
        self,
        k: int = 3,
        n: int = 5,
        high: float = 0.5,
        low: float = 0.1,
        min_iou: float = 0.2,
        max_misses: int = 10,
    ):
        self.k, self.n, self.high, self.low = k, n, high, low
        self.min_iou, self.max_misses = min_iou, max_misses
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
            if ids[d] == 0:
                track = Track(self.next_id, labels[d], boxes[d], float(scores[d]), frame, seconds, frame, seconds)
                track.seen.append(True)
                self.tracks.append(track)
                self.next_id += 1
                ids[d] = track.id
        events = []
        for track in self.tracks:
            on = sum(track.seen) >= self.k
            lost = track.misses >= self.max_misses
            if on and not track.alerting:
                track.alerting = True
                events.append(self._event("alert_start", track, frame, seconds))
            elif track.alerting and (not on or lost):
                track.alerting = False
                events.append(self._event("alert_end", track, frame, seconds))
        self.tracks = [t for t in self.tracks if t.misses < self.max_misses]
        return ids, events

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
        return {
            "event": kind,
            "track": track.id,
            "label": track.label,
            "best_score": round(track.best_score, 4),
            "first_time_s": round(track.first_time, 3),
            "last_time_s": round(track.last_time, 3),
            "frame": frame,
            "time_s": round(seconds, 3),
        }
