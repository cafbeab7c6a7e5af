"""`regiondet detect`: every named image, folder, video, camera or stream through one detector,
one JSON line per image or frame, drawn copies in an output folder if asked."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

from regiondet.data.images import load_upright
from regiondet.errors import UserError
from regiondet.inference.draw import draw_prediction
from regiondet.inference.faces import FaceBlur
from regiondet.inference.predictor import Detector
from regiondet.inference.sources import check_live_stride, check_not_over_inputs, expand_inputs, is_video
from regiondet.inference.video import AlertRule, detect_video


def _print_line(line: str) -> None:
    print(line, flush=True)


def detect_inputs(
    det: Detector,
    paths: list[str],
    out: Path | None = None,
    stride: int = 1,
    buffered: bool = False,
    recursive: bool = False,
    alert: AlertRule | None = None,
    emit: Callable[[str], None] = _print_line,
    events: Path | None = None,
    blur: FaceBlur | None = None,
) -> int:
    """Detect on every input; returns how many could not be read. A file that cannot be read is
    skipped with a one-line note, so one bad file in a folder does not stop the others; if none
    can be read, that is an error. With `events`, each alert_start / alert_end of the videos and
    live sources is appended to that file as a JSON line the moment it happens. Whatever is
    written to `out` has its faces blurred by `blur` first (None: kept as they are)."""
    items = expand_inputs(paths, recursive=recursive)
    if not items:
        raise UserError(f"no images or videos found in {', '.join(paths)}")
    check_live_stride([f for f, _ in items], stride, buffered)
    if out is not None:
        check_not_over_inputs(items, out)
    failed = 0
    with ExitStack() as stack:
        sink = stack.enter_context(open(events, "a", encoding="utf-8")) if events else None

        def on_event(event: dict) -> None:
            if sink is not None:
                sink.write(json.dumps(event) + "\n")
                sink.flush()

        failed = _detect_items(det, items, out, stride, buffered, alert, emit, on_event, blur)
    if failed == len(items):
        raise UserError("no image or video could be read")
    return failed


def _detect_items(det, items, out, stride, buffered, alert, emit, on_event, blur) -> int:
    failed = 0
    for f, name in items:
        target = out / name.parent if out else None
        if target:
            target.mkdir(parents=True, exist_ok=True)
        try:
            if is_video(f):
                detect_video(det, f, target, stride, emit, alert, buffered, name.name, on_event, blur)
                continue
            image = load_upright(Path(f))
        except UserError as e:
            print(f"regiondet: skipped: {e}", file=sys.stderr)
            failed += 1
            continue
        pred = det.predict(image)
        emit(json.dumps({"file": str(f), **pred.to_json()}))
        if target:
            shown = blur.blur(image) if blur is not None else image
            draw_prediction(shown, pred, det.classes).save(target / f"{name.name}.jpg", quality=90)
    return failed
