"""Detection on video files and streams, frame by frame, with OpenCV for decoding and encoding.

The photographing job is about video as much as photos: a lens pointed at someone shows up in
a run of frames. Each processed frame gives one JSON line (frame index and time added); with
an output folder the drawn frames become an .mp4 beside the images. The video is finished
under a temporary name and renamed at the end, so a stopped run (Ctrl-C) still leaves a
playable file of the frames done. Frames come from inference/sources.py.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from regiondet.errors import UserError
from regiondet.inference.draw import draw_prediction
from regiondet.inference.faces import FaceBlur
from regiondet.inference.prediction import Prediction
from regiondet.inference.predictor import Detector
from regiondet.inference.sources import cv2_module, open_frames, output_name
from regiondet.inference.tracking import DEFAULT_HOLD_S, AlertTracker


class VideoWriter:
    """An .mp4 (MPEG-4 Part 2, which every OpenCV build can write) written under a temporary
    name and moved into place on close, so a half-written file never wears the final name."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self.part = path.with_name(f".{path.stem}.part.mp4")
        self.writer = None

    def write(self, image: Image.Image) -> None:
        cv2 = cv2_module()
        frame = np.asarray(image.convert("RGB"))[:, :, ::-1]
        if self.writer is None:
            h, w = frame.shape[:2]
            self.writer = cv2.VideoWriter(str(self.part), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise UserError("cannot write video here", self.part)
        self.writer.write(np.ascontiguousarray(frame))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            os.replace(self.part, self.path)
            self.writer = None


class AlertRule(NamedTuple):
    """When a tracked lens's alert starts (seen confidently in k of its last n frames) and how
    long it must be out of view before the alert ends (hold_s seconds)."""

    k: int
    n: int
    hold_s: float = DEFAULT_HOLD_S


def parse_alert(text: str, hold_s: float = DEFAULT_HOLD_S) -> AlertRule:
    k, sep, n = text.partition("/")
    if not (sep and k.isdigit() and n.isdigit()):
        raise UserError(f"--alert takes K/N, e.g. 3/5 (got '{text}')")
    if not 1 <= int(k) <= int(n):
        raise UserError(f"--alert K/N needs 1 <= K <= N (got '{text}')")
    if not 0 <= hold_s <= 3600:  # also refuses nan
        raise UserError(f"the alert's hold is 0 to 3600 seconds (got {hold_s})")
    return AlertRule(int(k), int(n), float(hold_s))


def track_frame(
    detector: Detector,
    tracker: AlertTracker,
    frame: np.ndarray | Image.Image,
    index: int,
    seconds: float,
    score: float | None = None,
) -> tuple[Prediction, dict]:
    """Detect on one frame of a stream and follow its lenses: (the detections at the detector's
    score, the line's tracking fields: `tracks` (each detection's track id), `alert`, `events`).
    Weaker detections, down to the tracker's `low`, only keep existing tracks alive. `score`
    replaces the detector's own."""
    score = detector.score if score is None else score
    found = detector.predict(frame, score=min(tracker.low, score), live=True)
    ids, events = tracker.update(found.boxes, found.scores, found.labels, index, seconds)
    keep = np.asarray(found.scores) >= score
    fields = {"tracks": [i for i, k in zip(ids, keep, strict=True) if k], "alert": tracker.alert}
    if events:
        fields["events"] = events
    return found.above(score), fields


def new_tracker(detector: Detector, alert: AlertRule, score: float | None = None) -> AlertTracker:
    """A tracker whose confident detections are the detector's (at its score, or `score`), with
    the alert rule's K/N per track and its hold."""
    score = detector.score if score is None else score
    return AlertTracker(alert.k, alert.n, high=score, low=min(0.1, score), hold_s=alert.hold_s)


def detect_video(
    detector: Detector,
    source: str | Path,
    out: Path | None,
    stride: int = 1,
    emit: Callable[[str], None] = print,
    alert: AlertRule | None = None,
    buffered: bool = False,
    name: str | None = None,
    on_event: Callable[[dict], None] | None = None,
    blur: FaceBlur | None = None,
) -> int:
    """Run the detector on every `stride`-th frame of a file (of a live source: on the newest
    frame each time it is ready, unless `buffered`): one JSON line each, and with `out` the
    drawn frames as out/<name>.mp4 at the source's rate divided by stride, a drawn frame held
    over the frames skipped after it so the video keeps real time. With `alert` (k, n) each
    object is tracked and alerts while k of its last n frames had it: each line gives the
    detections' track ids and whether an alert is on, `on_event` gets each alert_start and
    alert_end (stderr notes each start). With `blur`, faces are blurred in every frame written.
    Returns frames done."""
    tracker = new_tracker(detector, alert) if alert else None
    frames = open_frames(source, stride, buffered)
    writer, held, last = None, None, None
    if out is not None:
        writer = VideoWriter(out / f"{name or output_name(source)}.mp4", frames.fps / stride)
    done = 0
    try:
        index, seconds = -1, 0.0
        for index, seconds, frame in frames:
            if tracker is None:
                pred, fields = detector.predict(frame, live=True), {}
            else:
                pred, fields = track_frame(detector, tracker, frame, index, seconds)
                _announce(fields.get("events", []), source, on_event)
            line = {"file": str(source), "frame": index, "time_s": round(seconds, 3), **pred.to_json()}
            ms = line.pop("ms")
            emit(json.dumps({**line, **fields, "ms": ms}))
            if writer is not None:
                for _ in range((index - last) // stride - 1 if last is not None else 0):
                    writer.write(held)  # the frames skipped while detecting: hold the last drawn one
                picture = Image.fromarray(frame)
                picture = blur.blur(picture, video=True) if blur is not None else picture
                held, last = draw_prediction(picture, pred, detector.classes), index
                writer.write(held)
            done += 1
    except KeyboardInterrupt:
        print(f"regiondet: stopped after {done} frames of {source}", file=sys.stderr)
        raise
    finally:
        if writer is not None:
            writer.close()
        if tracker is not None:  # alerts still on end with the stream
            _announce(tracker.close(index, seconds), source, on_event)
    return done


def _announce(events: list[dict], source: str | Path, on_event: Callable[[dict], None] | None) -> None:
    for e in events:
        if e["event"] == "alert_start":
            where = f"frame {e['frame']} ({e['time_s']:.1f} s)"
            print(f"regiondet: alert: {e['label']} (track {e['track']}) at {where} of {source}", file=sys.stderr)
        if on_event is not None:
            on_event({"file": str(source), **e})
