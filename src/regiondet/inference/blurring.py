"""`regiondet blur`: faces hidden in photos and videos before they are shared, with the same
blur that `detect --out` applies to everything it writes.

New files are written into the output folder, never over an input. A photo keeps its format
(JPEG, PNG, ...) but none of its metadata: EXIF can hold the place and time it was taken. A
video is written as .mp4 frame by frame under a temporary name; its sound is dropped unless
asked for (a voice identifies a person too), and kept by copying it from the input with ffmpeg
(the one in PATH, else the one the `imageio-ffmpeg` package ships). One JSON line per file
lists the regions blurred.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path

import numpy as np
from PIL import Image

from regiondet.data.images import load_upright
from regiondet.errors import UserError
from regiondet.inference.faces import FaceBlur
from regiondet.inference.sources import VideoReader, check_not_over_inputs, expand_inputs, is_live, is_video
from regiondet.inference.video import VideoWriter
from regiondet.io import check_output

AUDIO = ("drop", "keep")
# formats PIL writes; another input format is written as PNG
WRITABLE = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}


def blurred_name(source: str | Path, name: Path) -> Path:
    """The output file of an input: a photo keeps its suffix where PIL writes it (else .png), a video becomes .mp4."""
    suffix = Path(str(source)).suffix.lower()
    if is_video(source):
        return name.with_name(name.name + ".mp4")
    return name.with_name(name.name + (suffix if suffix in WRITABLE else ".png"))


def ffmpeg_path() -> str | None:
    """An ffmpeg to copy a video's sound with: PATH's, else imageio-ffmpeg's bundled one."""
    found = shutil.which("ffmpeg")
    if found or not find_spec("imageio_ffmpeg"):
        return found
    import imageio_ffmpeg  # optional: the video extra

    try:
        return imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError:
        return None


def blur_inputs(
    blur: FaceBlur,
    paths: list[str],
    out: Path,
    audio: str = "drop",
    recursive: bool = False,
    emit: Callable[[dict], None] = lambda line: print(json.dumps(line), flush=True),
) -> int:
    """Blur the faces of every photo and video named (folders expanded) into `out`, handing
    `emit` each file's line (file, out, regions); returns how many could not be read (each
    skipped with a one-line note; none readable is an error)."""
    if audio not in AUDIO:
        raise UserError(f"--audio is one of {', '.join(AUDIO)} (got '{audio}')")
    items = expand_inputs(paths, recursive=recursive)
    if not items:
        raise UserError(f"no images or videos found in {', '.join(paths)}")
    live = [str(f) for f, _ in items if is_live(f)]
    if live:
        raise UserError(f"blur works on files; {live[0]} is a camera or stream")
    ffmpeg = ffmpeg_path() if audio == "keep" and any(is_video(f) for f, _ in items) else None
    if audio == "keep" and ffmpeg is None and any(is_video(f) for f, _ in items):
        raise UserError("--audio keep needs ffmpeg: install it, or pip install imageio-ffmpeg")
    check_output(out, "--out", folder=True)
    check_not_over_inputs(items, out, blurred_name)
    failed = 0
    for source, target in ((f, out / blurred_name(f, name)) for f, name in items):
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            if is_video(source):
                line = _blur_video(blur, Path(source), target, ffmpeg)
            else:
                line = _blur_photo(blur, Path(source), target)
        except UserError as e:
            print(f"regiondet: skipped: {e}", file=sys.stderr)
            failed += 1
            continue
        emit({"file": str(source), "out": str(target), **line})
    if failed == len(items):
        raise UserError("no image or video could be read")
    return failed


def _regions_json(regions: np.ndarray) -> list[list[int]]:
    return [[int(v) for v in box] for box in regions.tolist()]


def _blur_photo(blur: FaceBlur, source: Path, target: Path) -> dict:
    image = load_upright(source)
    regions = blur.regions(image)
    done = blur.blur_regions(image, regions)
    part = target.with_name(f".{target.name}.part")
    fmt = WRITABLE.get(target.suffix.lower(), "PNG")
    try:
        done.save(part, format=fmt, **({"quality": 95} if fmt in ("JPEG", "WEBP") else {}))
        os.replace(part, target)
    except OSError as e:
        part.unlink(missing_ok=True)
        raise UserError(f"cannot write the blurred photo ({e.strerror or e})", target) from None
    return {"faces": len(regions), "regions": _regions_json(regions)}


def _blur_video(blur: FaceBlur, source: Path, target: Path, ffmpeg: str | None) -> dict:
    frames = VideoReader(source)
    silent = target.with_name(f".{target.stem}.silent.mp4") if ffmpeg else target
    writer = VideoWriter(silent, frames.fps)
    per_frame, count = [], 0
    try:
        for index, _, frame in frames:
            picture = Image.fromarray(frame)
            regions = blur.regions(picture, video=True)
            writer.write(blur.blur_regions(picture, regions))
            if len(regions):
                per_frame.append({"frame": index, "regions": _regions_json(regions)})
            count += 1
    finally:
        writer.close()
    line = {"frames": count, "frames_with_faces": len(per_frame), "faces": per_frame, "audio": "dropped"}
    if ffmpeg:
        line["audio"] = _with_sound(ffmpeg, silent, source, target)
    return line


def _with_sound(ffmpeg: str, silent: Path, source: Path, target: Path) -> str:
    """The blurred frames with the input's sound track copied in ('kept'), or as they are when
    the input has none ('none')."""
    part = target.with_name(f".{target.stem}.part.mp4")
    command = [ffmpeg, "-v", "error", "-y", "-i", str(silent), "-i", str(source)]
    command += ["-map", "0:v:0", "-map", "1:a:0?", "-c:v", "copy", "-c:a", "aac", "-shortest", str(part)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or ["no message"])[-1][:120]
            raise UserError(f"ffmpeg could not copy the sound ({said})", source)
        os.replace(part, target)
    finally:
        silent.unlink(missing_ok=True)
        part.unlink(missing_ok=True)
    return "kept" if _has_audio(ffmpeg, source) else "none"


def _has_audio(ffmpeg: str, source: Path) -> bool:
    """The input has a sound track (ffmpeg lists an 'Audio:' stream when reading it)."""
    probe = subprocess.run([ffmpeg, "-hide_banner", "-i", str(source)], capture_output=True, text=True, timeout=60)
    return "Audio:" in probe.stderr
