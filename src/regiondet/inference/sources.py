"""Where images and frames come from: files, folders, videos, cameras and streams, named on the
command line or by the service, are expanded and opened here, once.

A file is read frame by frame. A live source (a camera by index, an rtsp:// or http:// stream)
is read in a thread that keeps only the newest frame, as Ultralytics' stream loader does: a
detector slower than the camera would otherwise work through an ever older backlog, and a
warning about a lens would come seconds late.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from regiondet.data.images import IMAGE_SUFFIXES
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


def cv2_module():
    """OpenCV, imported when a video is first opened: it is an extra (`regiondet[video]`)."""
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
        announced = int(max(0.0, self.cap.get(cv2_module().CAP_PROP_FRAME_COUNT) or 0.0))
        decoder = NativeMessages()
        try:
            while decoder.call(self.cap.grab):
                if index % self.stride == 0:  # frames between are grabbed, not decoded
                    ok, frame = decoder.call(self.cap.retrieve)
                    if not ok:
                        break
                    read += 1
                    yield index, index / self.fps, np.ascontiguousarray(frame[:, :, ::-1])
                index += 1
        finally:
            decoder.call(self.cap.release)  # closing flushes the decoder's threads, which may complain too
            decoder.close()
        if decoder.calls_with_messages and read:
            print(
                f"regiondet: {self.source}: the decoder reported damage at {decoder.calls_with_messages} frame(s) "
                "(a damaged or partly written video): detections there may be missing or wrong",
                file=sys.stderr,
            )
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
    cv2 = cv2_module()
    camera = camera_index(source)
    if not is_live(source) and not Path(source).is_file():  # a camera index counts as live
        raise UserError("video file not found", source)
    quiet = NativeMessages()  # FFmpeg and OpenCV print their own lines for a bad source
    try:
        cap = quiet.call(lambda: _capture(cv2, source, camera))
        opened = cap.isOpened()
    finally:
        quiet.close()
    if not opened:
        if camera is not None:
            raise UserError(f"cannot open camera {camera} (no such device, or in use)")
        raise UserError("cannot open the video (unknown codec or not a video)", source)
    fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    return cap, (fps if 0 < fps < 1000 else 25.0)


def _capture(cv2, source: str | Path, camera: int | None):
    """cv2.VideoCapture of a camera, a stream, or a file decoded in the calling thread (so what
    FFmpeg says of a frame is said during its read)."""
    if camera is not None or is_live(source):
        return cv2.VideoCapture(camera if camera is not None else str(source))
    cap = cv2.VideoCapture(str(source), cv2.CAP_ANY, [cv2.CAP_PROP_N_THREADS, 1])
    return cap if cap.isOpened() else cv2.VideoCapture(str(source))  # a backend without that setting


def _flush_c_streams() -> None:
    """fflush(NULL): write out what C code has buffered in its stdio streams."""
    if _LIBC is not None:
        _LIBC.fflush(None)


try:
    _LIBC = ctypes.CDLL(None)
except OSError:  # no C library to load by that name (Windows): stderr is unbuffered there
    _LIBC = None


class NativeMessages:
    """What C libraries (FFmpeg through OpenCV) write to file descriptor 2 while a decoding call
    runs, caught in a pipe and dropped instead of reaching the terminal line by line; the calls
    that wrote anything are counted, so a damaged video gets one line of ours that says so.
    Only the call itself is redirected: Python's own warnings between calls are untouched."""

    def __init__(self) -> None:
        self.calls_with_messages = 0
        try:
            self.saved = os.dup(2)
            self.read_end, self.write_end = os.pipe()
        except OSError:  # no descriptor 2 (a detached process): nothing to catch
            self.read_end = None
            return
        os.set_blocking(self.read_end, False)
        os.set_blocking(self.write_end, False)  # a full pipe drops the library's text, never blocks it

    def call(self, fn: Callable):
        if self.read_end is None:
            return fn()
        sys.stderr.flush()
        os.dup2(self.write_end, 2)
        try:
            return fn()
        finally:
            _flush_c_streams()  # C stdio may hold the library's lines in a buffer until exit
            os.dup2(self.saved, 2)
            self.calls_with_messages += self._drain()

    def _drain(self) -> bool:
        wrote = False
        while True:
            try:
                chunk = os.read(self.read_end, 1 << 16)
            except BlockingIOError:
                return wrote
            if not chunk:
                return wrote
            wrote = True

    def close(self) -> None:
        if self.read_end is not None:
            for fd in (self.read_end, self.write_end, self.saved):
                os.close(fd)
            self.read_end = None


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


def open_frames(source: str | Path, stride: int = 1, buffered: bool = False) -> VideoReader | LiveReader:
    """A video file's every `stride`-th frame, or a live source's newest frame each time one is
    asked for (every frame in turn with `buffered`, which is also the only way to stride one)."""
    check_live_stride([source], stride, buffered)
    return LiveReader(source) if is_live(source) and not buffered else VideoReader(source, stride)


def check_live_stride(sources: list[str | Path], stride: int, buffered: bool) -> None:
    """A live source gives its newest frame, so there is nothing to stride unless it is buffered."""
    if stride < 1:
        raise UserError("--stride must be at least 1")
    live = [s for s in sources if is_live(s)]
    if live and stride > 1 and not buffered:
        raise UserError("--stride: a live source gives its newest frame; add --buffered to stride it", live[0])


def expand_images(paths: list[str]) -> list[Path]:
    """Image files named or inside the named folders (not their sub-folders)."""
    files = [Path(f) for f, _ in expand_inputs(paths, videos=False)]
    if not files:
        raise UserError(f"no images found in {', '.join(paths)}")
    return files


def expand_inputs(paths: list[str], videos: bool = True, recursive: bool = False) -> list[tuple[str | Path, Path]]:
    """(input, output name) pairs: images, and with `videos` video files, stream URLs and camera
    indices; a folder gives the images (and videos) in it, with `recursive` also in its
    sub-folders, their output names keeping the sub-folder so equal file names do not collide."""
    wanted = IMAGE_SUFFIXES | (VIDEO_SUFFIXES if videos else set())
    items: list[tuple[str | Path, Path]] = []
    for text in paths:
        p = Path(text)
        if videos and is_live(text):
            items.append((text, Path(output_name(text))))
        elif p.is_dir():
            found = p.rglob("*") if recursive else p.iterdir()
            inside = sorted(f for f in found if f.is_file() and f.suffix.lower() in wanted)
            items += [(f, f.relative_to(p).with_suffix("")) for f in inside]
        elif p.exists():
            items.append((p, Path(p.stem)))
        else:
            raise UserError("no such file or folder", p)
    return unique_outputs(items)


def drawn_name(source: str | Path, name: Path) -> str:
    """The file a source's drawn output is written to: an .mp4 for a video, a .jpg for an image."""
    return str(name) + (".mp4" if is_video(source) else ".jpg")


def check_not_over_inputs(
    items: list[tuple[str | Path, Path]],
    out: Path,
    output_of: Callable[[str | Path, Path], str | Path] = drawn_name,
) -> None:
    """Refuse, before any work, an --out folder where an output (`output_of` an input and its
    output name: the drawn file by default) would replace an input (the user's photo.jpg drawn
    over by photo.jpg with boxes, or blurred over)."""
    inputs = {Path(f).resolve() for f, _ in items if not isinstance(f, str) or Path(f).exists()}
    for f, name in items:
        target = (out / output_of(f, name)).resolve()
        if target in inputs:
            raise UserError(f"--out {out} would write over this input: choose another folder", target)


def unique_outputs(items: list[tuple[str | Path, Path]]) -> list[tuple[str | Path, Path]]:
    """Output names that never write one drawn file over another: inputs whose drawn files
    would share a name (x.jpg and x.png both drawn as x.jpg; v.avi and v.mp4 as v.mp4) keep
    their source suffix in it (x_jpg.jpg, x_png.jpg); different files of one name in different
    folders (a/x.jpg, b/x.jpg) go under their folder's name (a/x.jpg, b/x.jpg), numbered if
    the folders share a name too; the same input named twice is an error."""
    seen: dict[Path | str, str | Path] = {}
    for f, _ in items:
        key = Path(f).resolve() if isinstance(f, Path) or Path(str(f)).exists() else str(f)
        if key in seen:
            raise UserError(f"named twice (also as {seen[key]}): each input once, please", f)
        seen[key] = f
    out = list(items)
    for i in _colliding(out):
        f, name = out[i]
        suffix = Path(str(f)).suffix.lstrip(".").lower()
        out[i] = (f, name.with_name(f"{name.name}_{suffix}") if suffix else name)
    for i in _colliding(out):  # the same suffix too: the folder's name tells them apart
        f, name = items[i]
        out[i] = (f, Path(Path(str(f)).resolve().parent.name or "root") / name)
    for n, i in enumerate(_colliding(out)):
        f, name = out[i]
        out[i] = (f, name.with_name(f"{name.name}_{n + 1}"))
    return out


def _colliding(items: list[tuple[str | Path, Path]]) -> list[int]:
    """The positions of items whose drawn files would share a name."""
    groups: dict[str, list[int]] = {}
    for i, (f, name) in enumerate(items):
        groups.setdefault(drawn_name(f, name), []).append(i)
    return [i for members in groups.values() if len(members) > 1 for i in members]
