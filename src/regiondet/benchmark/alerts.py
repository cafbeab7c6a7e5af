"""How the live alert behaves: how many frames after a lens comes into view the alert starts,
and how many alerts frames without a lens raise.

There is no labelled video of lenses pointed at a camera here, so the clips are made from
labelled photos the way a phone held up moves: each lens photo drifts and zooms slowly over
`lens_frames` frames, between stretches of object-free scenes (also drifting). Every frame
goes through the same path as `regiondet detect VIDEO --alert K/N` (track_frame).

Long clips hold one lens in view for 5-20 s, each frame shaken as a hand-held camera shakes it
(a few pixels of jitter, exposure flicker, sensor noise, now and then motion blur), so the
model's detections come and go from frame to frame as on real video: one appearance should
start one alert.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter
from tqdm import tqdm

from regiondet.data.images import load_upright
from regiondet.data.sample import Sample
from regiondet.inference.predictor import Detector
from regiondet.inference.video import AlertRule, new_tracker, track_frame

SIDE = 416  # frames are SIDE x SIDE


def drift(image: Image.Image, frames: int, seed: int) -> Iterator[Image.Image]:
    """`frames` views of an image: a window of 85-100 % of its shorter side panning and
    zooming slowly, as a hand-held camera sees a still scene."""
    rng = np.random.default_rng(seed)
    side = min(image.size)
    start, end = rng.uniform(0.85, 1.0, 2)
    for i in range(frames):
        t = i / max(frames - 1, 1)
        w = side * (start + (end - start) * t)
        left = (image.width - w) * (0.5 + 0.4 * np.sin(2 * np.pi * t + seed) / 2)
        top = (image.height - w) * (0.5 + 0.4 * np.cos(2 * np.pi * t + seed) / 2)
        yield image.crop((int(left), int(top), int(left + w), int(top + w))).resize((SIDE, SIDE))


def shake(frames: Iterator[Image.Image], seed: int) -> Iterator[Image.Image]:
    """Each frame as a hand-held camera gives it: up to 6 px of jitter, +-15 % exposure, sensor
    noise, and motion blur in about one frame in seven."""
    rng = np.random.default_rng(seed)
    for frame in frames:
        dx, dy = (int(v) for v in rng.integers(0, 13, 2))
        frame = frame.crop((dx, dy, SIDE - 12 + dx, SIDE - 12 + dy)).resize((SIDE, SIDE))
        frame = ImageEnhance.Brightness(frame).enhance(float(rng.uniform(0.85, 1.15)))
        if rng.random() < 0.15:
            frame = frame.filter(ImageFilter.GaussianBlur(float(rng.uniform(1.0, 2.5))))
        noisy = np.asarray(frame, np.float32) + rng.normal(0, 4, (SIDE, SIDE, 3))
        yield Image.fromarray(np.clip(noisy + 0.5, 0, 255).astype(np.uint8))


def run_alert_benchmark(
    detector: Detector,
    lens: list[Sample],
    negatives: list[Sample],
    alert: AlertRule,
    lens_frames: int = 20,
    gap_frames: int = 10,
    negative_frames: int = 30,
    fps: float = 10.0,
    progress: bool = True,
    long_clips: int = 0,
    long_seconds: tuple[float, float] = (5.0, 20.0),
    seed: int = 0,
) -> dict:
    """Lens clips (gap, lens, gap), lens-free clips and `long_clips` long appearances of one
    shaken lens; returns the figures and the raw counts."""
    if not negatives:
        raise ValueError("object-free scenes are needed between and without the lenses")
    delays, missed, false_in_lens_clips, ms = [], 0, 0, []
    clips = [s for s in lens if (~s.ignore).any()]
    for c, sample in enumerate(tqdm(clips, desc="lens clips", disable=not progress, leave=False)):
        before, after = negatives[c % len(negatives)], negatives[(c + 1) % len(negatives)]
        frames = [*drift(load_upright(before.path), gap_frames, c)]
        frames += drift(load_upright(sample.path), lens_frames, c)
        frames += drift(load_upright(after.path), gap_frames, c + 1)
        starts, times = _alert_starts(detector, alert, frames, fps)
        ms += times
        inside = [f for f in starts if gap_frames <= f < gap_frames + lens_frames]
        # an alert before the lens, or after it left and its track's window emptied, is false
        outside = [f for f in starts if f < gap_frames or f >= gap_frames + lens_frames + alert.n]
        false_in_lens_clips += len(outside)
        if inside:
            delays.append(inside[0] - gap_frames)
        else:
            missed += 1
    alerts_without_lens, negative_clips = 0, 0
    for c in tqdm(range(0, len(negatives), 3), desc="lens-free clips", disable=not progress, leave=False):
        scenes = negatives[c : c + 3]
        frames = [f for i, s in enumerate(scenes) for f in drift(load_upright(s.path), negative_frames // 3, c + i)]
        starts, times = _alert_starts(detector, alert, frames, fps)
        ms += times
        alerts_without_lens += len(starts)
        negative_clips += 1
    minutes = negative_clips * negative_frames / fps / 60
    long = _long_clips(detector, clips, negatives, alert, long_clips, long_seconds, gap_frames, fps, seed, progress)
    ms += long.pop("ms")
    return {
        "alert": f"{alert.k}/{alert.n}",
        "hold_s": alert.hold_s,
        "fps": fps,
        "lens_clips": len(clips),
        "lens_clips_alerted": len(clips) - missed,
        "lens_clips_alerted_within_1s": sum(d <= fps for d in delays),
        "frames_to_alert_median": float(np.median(delays)) if delays else None,
        "frames_to_alert_p90": float(np.percentile(delays, 90)) if delays else None,
        "false_alerts_in_lens_clips": false_in_lens_clips,
        "lens_free_clips": negative_clips,
        "lens_free_minutes": minutes,
        "alerts_without_lens": alerts_without_lens,
        "alerts_per_lens_free_minute": alerts_without_lens / minutes if minutes else None,
        "ms_per_frame_median": float(np.median(ms)) if ms else None,
        **long,
    }


def _long_clips(
    detector: Detector,
    clips: list[Sample],
    negatives: list[Sample],
    alert: AlertRule,
    count: int,
    seconds: tuple[float, float],
    gap_frames: int,
    fps: float,
    seed: int,
    progress: bool,
) -> dict:
    """`count` clips: a street scene, one lens in view for a drawn 5-20 s (shaken), then street
    scenes for the hold and the window to run out. The lens photos are those with one labelled
    lens: two lenses in view are two alerts by right, and would blur the count. Alert starts
    while the lens is in view (or within N frames of it leaving) per clip, the share of clips
    alerted within 1 s, and the share of lens frames with a confident detection (how often the
    model itself misses)."""
    clips = [s for s in clips if (~s.ignore).sum() == 1]
    if not count or not clips:
        return {"ms": []}
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(clips), min(count, len(clips)), replace=False)
    after = gap_frames + int(np.ceil(alert.hold_s * fps)) + alert.n
    starts_per, first, lengths, seen, ms = [], [], [], [], []
    for j, c in enumerate(tqdm(picks, desc="long lens clips", disable=not progress, leave=False)):
        frames_in = int(round(rng.uniform(*seconds) * fps))
        before, later = negatives[(c + j) % len(negatives)], negatives[(c + j + 1) % len(negatives)]
        frames = [*drift(load_upright(before.path), gap_frames, int(c))]
        frames += shake(drift(load_upright(clips[c].path), frames_in, int(c)), seed + j)
        frames += drift(load_upright(later.path), after, int(c) + 1)
        tracker = new_tracker(detector, alert)
        starts = []
        for i, frame in enumerate(frames):
            pred, fields = track_frame(detector, tracker, frame, i, i / fps)
            ms.append(pred.seconds * 1000)
            starts += [e["frame"] for e in fields.get("events", []) if e["event"] == "alert_start"]
            if gap_frames <= i < gap_frames + frames_in:
                seen.append(bool(len(pred.boxes)))
        inside = [f for f in starts if gap_frames <= f < gap_frames + frames_in + alert.n]
        starts_per.append(len(inside))
        first.append(inside[0] - gap_frames if inside else None)
        lengths.append(frames_in / fps)
    return {
        "long_clips": len(picks),
        "long_clip_seconds_median": float(np.median(lengths)),
        "long_alert_starts_per_appearance": float(np.mean(starts_per)),
        "long_alert_starts_max": int(max(starts_per)),
        "long_clips_alerted_within_1s": sum(f is not None and f <= fps for f in first),
        "long_lens_frames_detected": float(np.mean(seen)) if seen else None,
        "ms": ms,
    }


def _alert_starts(
    detector: Detector, alert: tuple[int, int], frames: list[Image.Image], fps: float
) -> tuple[list[int], list[float]]:
    """Frame indices where an alert started, and ms per frame."""
    tracker = new_tracker(detector, alert)
    starts, ms = [], []
    for i, frame in enumerate(frames):
        pred, fields = track_frame(detector, tracker, frame, i, i / fps)
        ms.append(pred.seconds * 1000)
        starts += [e["frame"] for e in fields.get("events", []) if e["event"] == "alert_start"]
    return starts, ms


class Replay:
    """A detector's answers recorded once, at `floor`, and given again for the same frame: the
    benchmark run again at another threshold without running the model again. Frames are known
    by a digest of their pixels, so a replay does not depend on the clips being drawn in the same
    order (a frame never seen is run and recorded)."""

    def __init__(self, detector: Detector, floor: float):
        self.detector, self.floor = detector, floor
        self.classes, self.runtime, self.score = detector.classes, detector.runtime, detector.score
        self.answers: dict[tuple, object] = {}

    def at(self, score: float) -> Replay:
        """Confident detections from `score` on."""
        if score < self.floor:
            raise ValueError(f"score {score} is below the recorded floor {self.floor}")
        self.score = score
        return self

    def predict(self, frame, score: float | None = None, live: bool = True):
        """The detector's answer on a frame (read as `live` says: the clips are video)."""
        wanted = self.score if score is None else score
        pixels = np.ascontiguousarray(np.asarray(frame))
        key = (pixels.shape, live, hashlib.blake2b(pixels.tobytes(), digest_size=16).digest())
        if key not in self.answers:
            self.answers[key] = self.detector.predict(frame, score=self.floor, live=live)
        return self.answers[key].above(max(wanted, self.floor))


def run_alert_benchmarks(detector: Detector, scores: list[float], *args, **kwargs) -> dict[float, dict]:
    """run_alert_benchmark at each of `scores`, the model run once (its answers replayed)."""
    replay = Replay(detector, min(0.1, *scores))
    return {score: run_alert_benchmark(replay.at(score), *args, **kwargs) for score in scores}


def format_alerts_by_score(results: dict[float, dict]) -> str:
    """The figures of several scores side by side, one column each."""
    tables = {score: format_alerts(res).splitlines() for score, res in results.items()}
    first = next(iter(tables.values()))
    head = first[0].rsplit("|", 2)[0] + "| " + " | ".join(f"score {s:g}" for s in tables) + " |"
    rows = [head, "|---|" + "---|" * len(tables)]
    for i, line in enumerate(first[2:], 2):
        label = line.rsplit("|", 2)[0]
        rows.append(label + "| " + " | ".join(t[i].rsplit("|", 2)[1].strip() for t in tables.values()) + " |")
    return "\n".join(rows)


def format_alerts(res: dict) -> str:
    delay = res["frames_to_alert_median"]
    lines = [
        f"| alert {res['alert']}, hold {res['hold_s']:g} s, at {res['fps']:g} fps | value |",
        "|---|---|",
        f"| lens clips with an alert while the lens is in view | {res['lens_clips_alerted']} of {res['lens_clips']} |",
        f"| lens clips alerted within 1 s of the lens coming into view | "
        f"{res['lens_clips_alerted_within_1s']} of {res['lens_clips']} |",
        f"| frames from the lens coming into view to the alert, median / p90 | "
        f"{delay if delay is not None else '-'} / {res['frames_to_alert_p90'] if delay is not None else '-'} |",
        f"| alerts without a lens in view, in the lens clips | {res['false_alerts_in_lens_clips']} |",
        f"| alerts in {res['lens_free_clips']} lens-free clips ({res['lens_free_minutes']:.1f} min at this rate) | "
        f"{res['alerts_without_lens']} |",
        f"| ms per frame, median | {res['ms_per_frame_median']:.0f} |",
    ]
    if res.get("long_clips"):
        lines += [
            f"| long clips (one lens in view {res['long_clip_seconds_median']:.0f} s median, shaken) | "
            f"{res['long_clips']} |",
            f"| alert starts per appearance, mean / most | {res['long_alert_starts_per_appearance']:.2f} / "
            f"{res['long_alert_starts_max']} |",
            f"| long clips alerted within 1 s | {res['long_clips_alerted_within_1s']} of {res['long_clips']} |",
            f"| lens frames with a detection (the model's own misses) | {res['long_lens_frames_detected']:.1%} |",
        ]
    return "\n".join(lines)
