"""Evaluate a text detector with the ICDAR 2015 protocol (polygon IoU), plus latency.

Any detector fits: a function from RGB pixels to polygons (and optionally their scores),
timed around the call, so regiondet's models and the offline peers are scored by the same
code on the same images. With scores, the figures are also given at a ladder of thresholds
from one pass (polygon NMS keeps the better outline first, so filtering afterwards gives what
a run at the higher threshold would).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import numpy as np
from tqdm import tqdm

from regiondet.data.images import load_rgb
from regiondet.data.sample import Sample
from regiondet.evaluation.proposals import ProposalRecorder, proposal_recall
from regiondet.evaluation.recorded import RecordedPredictions, default_score, detection_line
from regiondet.evaluation.text import match_image, recall_by_height, text_height, text_metrics
from regiondet.inference.predictor import Detector

PolygonFn = Callable[[np.ndarray], "list[np.ndarray] | tuple[list[np.ndarray], np.ndarray]"]
LADDER = (0.3, 0.5, 0.6, 0.7, 0.8, 0.9)
IOU_LADDER = (0.5, 0.6, 0.7, 0.8)  # stricter matches tell a tight outline from a loose one


def evaluate_polygons(
    detect: PolygonFn,
    samples: list[Sample],
    progress: bool = True,
    desc: str = "evaluate",
    score: float | None = None,
    ladder: tuple[float, ...] = (),
    iou_ladder: tuple[float, ...] = IOU_LADDER,
) -> dict:
    """precision, recall, hmean (ICDAR 2015 rules) and latency_ms_median / p90 of detect over samples.

    When detect also returns scores, `score` filters them and `ladder` adds "by_score";
    `iou_ladder` adds "by_iou", the same at stricter match thresholds.
    """
    found, seconds = [], []
    for s in tqdm(samples, desc=desc, disable=not progress, leave=False):
        pixels = load_rgb(s.path)
        start = time.perf_counter()
        out = detect(pixels)
        seconds.append(time.perf_counter() - start)
        polys, scores = out if isinstance(out, tuple) else (out, None)
        scale = np.array([s.width / pixels.shape[1], s.height / pixels.shape[0]], np.float32)
        polys = [np.asarray(p, np.float32) * scale for p in polys]
        found.append((s, polys, np.ones(len(polys)) if scores is None else np.asarray(scores, float)))

    def matches(threshold: float | None, iou: float = 0.5) -> list:
        t = -np.inf if threshold is None else threshold
        return [
            match_image(s.outlines(), s.ignore, [p for p, c in zip(polys, sc, strict=True) if c >= t], iou)
            for s, polys, sc in found
        ]

    def metrics(threshold: float | None, iou: float = 0.5) -> dict:
        return text_metrics(matches(threshold, iou))

    ms = np.array(seconds) * 1000 if seconds else np.zeros(1)
    at_score = matches(score)
    heights = [care_heights(s) for s, _, _ in found]
    res = {
        "images": len(samples),
        **text_metrics(at_score),
        "recall_by_height": recall_by_height(at_score, heights),
        "latency_ms_median": float(np.median(ms)),
        "latency_ms_p90": float(np.percentile(ms, 90)),
    }
    if ladder:
        rows = {f"{t:g}": metrics(t) for t in ladder}
        res["by_score"] = {t: {k: m[k] for k in ("precision", "recall", "hmean")} for t, m in rows.items()}
    if iou_ladder:
        rows = {f"{t:g}": metrics(score, t) for t in iou_ladder}
        res["by_iou"] = {t: {k: m[k] for k in ("precision", "recall", "hmean")} for t, m in rows.items()}
    return res


def evaluate_text(
    detector: Detector | RecordedPredictions,
    samples: list[Sample],
    score: float | None = None,
    progress: bool = True,
    ladder: tuple[float, ...] = LADDER,
    saved: list[dict] | None = None,
    desc: str = "evaluate",
) -> dict:
    """evaluate_polygons of a regiondet text model at its score (or the one given), plus the ladder
    and, for torchvision models, proposal_recall by word height. `saved` collects each image's
    outlines (down to the ladder's lowest score) as detect's JSON lines."""
    score = default_score(detector, score)
    floor = min((score, *ladder))
    if isinstance(detector, RecordedPredictions):  # evaluate_polygons asks for samples in order
        recorded = iter([detector.prediction(s) for s in samples])  # any missing image fails first

    preds = []

    def detect(pixels: np.ndarray):
        if isinstance(detector, RecordedPredictions):
            pred = next(recorded)
        else:  # the time evaluate_polygons measures (outlines and their NMS too) goes in the saved lines
            start = time.perf_counter()
            pred = detector.predict(pixels, score=floor)
            pred = replace(pred, seconds=time.perf_counter() - start)
        preds.append(pred)
        return pred.polygons or [], pred.scores

    with ProposalRecorder(getattr(detector, "model", None)) as recorder:
        res = evaluate_polygons(detect, samples, progress, desc, score=score, ladder=ladder)
    if isinstance(detector, RecordedPredictions):  # the recorded run's times, not the file lookups
        ms = [1000 * p.seconds for p in preds]
        res["latency_ms_median"], res["latency_ms_p90"] = float(np.median(ms)), float(np.percentile(ms, 90))
    if saved is not None:
        saved += [detection_line(s, p) for s, p in zip(samples, preds, strict=True)]
    proposals = recorder.per_image(len(samples))
    if proposals is not None:  # by word height, as recall_by_height
        res["proposal_recall"] = proposal_recall(samples, proposals, (8, 16, 32), care_heights)
    return {"images": res.pop("images"), "score": score, **res}


def care_heights(sample: Sample) -> np.ndarray:
    """Height of each care word (text_height), the size measure of text evaluation."""
    return np.array([text_height(p) for p, ig in zip(sample.outlines(), sample.ignore, strict=True) if not ig])
