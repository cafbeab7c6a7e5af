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
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from regiondet.errors import UserError
from regiondet.inference.draw import draw_prediction
from regiondet.inference.predictor import Detector
from regiondet.inference.sources import cv2_module, open_frames, output_name


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


class Alert:
    """On when at least k of the last n processed frames had a detection: one frame is noise,
    a lens held towards the wearer stays in view."""

    def __init__(self, k: int, n: int):
        self.k, self.seen = k, deque(maxlen=n)

    def update(self, found: bool) -> bool:
        self.seen.append(found)
        return sum(self.seen) >= self.k


def parse_alert(text: str) -> tuple[int, int]:
    k, sep, n = text.partition("/")
    if not (sep and k.isdigit() and n.isdigit()):
        raise UserError(f"--alert takes K/N, e.g. 3/5 (got '{text}')")
    if not 1 <= int(k) <= int(n):
        raise UserError(f"--alert K/N needs 1 <= K <= N (got '{text}')")
    return int(k), int(n)


def detect_video(
    detector: Detector,
    source: str | Path,
    out: Path | None,
    stride: int = 1,
    emit: Callable[[str], None] = print,
    alert: tuple[int, int] | None = None,
    buffered: bool = False,
    name: str | None = None,
) -> int:
    """Run the detector on every `stride`-th frame of a file (of a live source: on the newest
    frame each time it is ready, unless `buffered`): one JSON line each, and with `out` the
    drawn frames as out/<name>.mp4 at the source's rate divided by stride, a drawn frame held
    over the frames skipped after it so the video keeps real time. With `alert` (k, n) each
    line says whether k of the last n frames had a detection, and stderr notes each start of
    an alert. Returns frames done."""
    alarm, was_on = (Alert(*alert) if alert else None), False
    frames = open_frames(source, stride, buffered)
    writer, held, last = None, None, None
    if out is not None:
        writer = VideoWriter(out / f"{name or output_name(source)}.mp4", frames.fps / stride)
    done = 0
    try:
        for index, seconds, frame in frames:
            pred = detector.predict(frame)
            line = {"file": str(source), "frame": index, "time_s": round(seconds, 3), **pred.to_json()}
            ms = line.pop("ms")
            if alarm is not None:
                line["alert"] = on = alarm.update(len(pred.scores) > 0)
                if on and not was_on:
                    print(f"regiondet: alert at frame {index} ({seconds:.1f} s) of {source}", file=sys.stderr)
                was_on = on
            emit(json.dumps({**line, "ms": ms}))
            if writer is not None:
                for _ in range((index - last) // stride - 1 if last is not None else 0):
                    writer.write(held)  # the frames skipped while detecting: hold the last drawn one
                held, last = draw_prediction(Image.fromarray(frame), pred, detector.classes), index
                writer.write(held)
            done += 1
    except KeyboardInterrupt:
        print(f"regiondet: stopped after {done} frames of {source}", file=sys.stderr)
        raise
    finally:
        if writer is not None:
            writer.close()
    return done
