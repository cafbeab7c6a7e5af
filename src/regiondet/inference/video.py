"""Detection on video files and streams, frame by frame, with OpenCV for decoding and encoding.

The photographing job is about video as much as photos: a lens pointed at someone shows up in
a run of frames. Each processed frame gives one JSON line (frame index and time added); with
an output folder the drawn frames become an .mp4 beside the images. The video is finished
under a temporary name and renamed at the end, so a stopped run (Ctrl-C) still leaves a
playable file of the frames done.

A file is read frame by frame. A live source (a camera by index, an rtsp:// or http:// stream)
is read in a thread that keeps only the newest frame, as Ultralytics' stream loader does: a
detector slower than the camera would otherwise work through an ever older backlog, and a
warning about a lens would come seconds late.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from regiondet.errors import UserError

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")


def camera_index(source: str | Path) -> int | None:
    """The device number of a camera source ('0', '1', ... with no such file), else None."""
    text = str(source)
    return int(text) if text.isdigit() and not Path(text).exists() else None


def is_live(source: str | Path) -> bool:
    """A camera or a stream: frames arrive in real time, whether or not they are read."""
    return camera_index(source) is not None or str(source).startswith(STREAM_PREFIXES)


def is_video(path: str | Path) -> bool:
    """A video file by its suffix, a stream URL that OpenCV can open, or a camera index."""
    return is_live(path) or Path(str(path)).suffix.lower() in VIDEO_SUFFIXES


def _cv2():
    try:
        import cv2
    except ImportError:
        raise UserError("reading video needs OpenCV: pip install 'regiondet[video]'") from None
    return cv2


class VideoReader:
    """An opened video or stream: its frame rate, and every `stride`-th frame as
    (frame index, seconds, HxWx3 RGB array). Opened once, so a stream is connected once."""

    def __init__(self, source: str | Path, stride: int = 1):
        self.source, self.stride = source, stride
        self.cap, self.fps = _open(source)

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        index, read = 0, 0
        announced = int(max(0.0, self.cap.get(_cv2().CAP_PROP_FRAME_COUNT) or 0.0))
        try:
            while self.cap.grab():
                if index % self.stride == 0:  # frames between are grabbed, not decoded
                    ok, frame = self.cap.retrieve()
                    if not ok:
                        break
                    read += 1
                    yield index, index / self.fps, np.ascontiguousarray(frame[:, :, ::-1])
                index += 1
        finally:
            self.cap.release()
        if read == 0:
            raise UserError("no frame could be decoded (empty or corrupt video)", self.source)
        if index < announced - max(1, announced // 100):  # containers' counts may be off by a frame
            print(
                f"regiondet: {self.source}: the video ended after {index} of the {announced} frames "
                "its container announces (truncated or damaged)",
                file=sys.stderr,
            )


def _open(source: str | Path):
    """(an opened cv2.VideoCapture, its frame rate) for a file, stream or camera index."""
    cv2 = _cv2()
    camera = camera_index(source)
    if not is_live(source) and not Path(source).is_file():  # a camera index counts as live
        raise UserError("video file not found", source)
    with _native_stderr_silenced():  # FFmpeg and OpenCV print their own lines for a bad source
        cap = cv2.VideoCapture(camera if camera is not None else str(source))
        opened = cap.isOpened()
    if not opened:
        if camera is not None:
            raise UserError(f"cannot open camera {camera} (no such device, or in use)")
        raise UserError("cannot open the video (unknown codec or not a video)", source)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    return cap, (fps if 0 < fps < 1000 else 25.0)


@contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Send what C libraries write to file descriptor 2 to /dev/null for the block; Python's
    own sys.stderr is flushed first and comes back after."""
    sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (a detached process): nothing to silence
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


class LiveReader:
    """A camera or stream read in a thread that keeps only the newest frame; iterating gives
    (frame index, seconds since opening, HxWx3 RGB array) of the newest frame not yet given,
    skipping the frames that arrived while the caller was busy."""

    def __init__(self, source: str | Path):
        self.source = source
        self.cap, self.fps = _open(source)
        self._cond = threading.Condition()
        self._newest: tuple[int, float, np.ndarray] | None = None
        self._finished = self._stop = False
        self._start = time.monotonic()
        self._thread = threading.Thread(target=self._read, name=f"regiondet-live-{source}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        index = 0
        try:
            while not self._stop:
                ok, frame = self.cap.read()  # OpenCV releases the GIL while it waits and decodes
                if not ok:
                    break
                with self._cond:
                    self._newest = (index, time.monotonic() - self._start, frame)
                    self._cond.notify()
                index += 1
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify()

    def __iter__(self) -> Iterator[tuple[int, float, np.ndarray]]:
        given = -1
        try:
            while True:
                with self._cond:
                    self._cond.wait_for(lambda g=given: self._finished or (self._newest and self._newest[0] > g))
                    if self._newest is None or self._newest[0] <= given:
                        break  # finished, nothing newer
                    index, seconds, frame = self._newest
                given = index
                yield index, seconds, np.ascontiguousarray(frame[:, :, ::-1])
        finally:
            self._stop = True
            self._thread.join(timeout=5)
            if not self._thread.is_alive():  # a stalled stream may still hold the capture
                self.cap.release()
        if given < 0:
            raise UserError("no frame could be read from the live source", self.source)


def output_name(source: str | Path) -> str:
    """The stem of a source's drawn video: the file's stem, 'camera0', or the stream's last part."""
    camera = camera_index(source)
    if camera is not None:
        return f"camera{camera}"
    return Path(str(source).rstrip("/")).stem or "stream"


def read_frames(source: str | Path, stride: int = 1) -> Iterator[tuple[int, float, np.ndarray]]:
    """(frame index, seconds, HxWx3 RGB array) for every `stride`-th frame."""
    return iter(VideoReader(source, stride))


class VideoWriter:
    """An .mp4 (MPEG-4 Part 2, which every OpenCV build can write) written under a temporary
    name and moved into place on close, so a half-written file never wears the final name."""

    def __init__(self, path: Path, fps: float):
        self.path, self.fps = path, fps
        self.part = path.with_name(f".{path.stem}.part.mp4")
        self.writer = None

    def write(self, image: Image.Image) -> None:
        cv2 = _cv2()
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
    detector,
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
    from regiondet.inference.draw import draw_prediction

    alarm, was_on = (Alert(*alert) if alert else None), False

    live = is_live(source) and not buffered
    if live and stride > 1:
        raise UserError("--stride: a live source gives its newest frame; add --buffered to stride it", source)
    frames = LiveReader(source) if live else VideoReader(source, stride)
    writer, held, last = None, None, None
    if out is not None:
        writer = VideoWriter(out / f"{name or output_name(source)}.mp4", frames.fps / stride)
    done = 0
    try:
        for index, seconds, frame in frames:
            pred = detector.predict(frame)
            line = {"file": str(source), "frame": index, "time_s": round(seconds, 3), **pred.to_json()}
            if alarm is not None:
                line["alert"] = on = alarm.update(len(pred.scores) > 0)
                if on and not was_on:
                    print(f"regiondet: alert at frame {index} ({seconds:.1f} s) of {source}", file=sys.stderr)
                was_on = on
            emit(json.dumps({**line, "ms": round(pred.seconds * 1000, 1)}))
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
