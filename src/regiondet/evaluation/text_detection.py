"""Evaluate a text detector with the ICDAR 2015 protocol (polygon IoU), plus latency.

Any detector fits: a function from RGB pixels to polygons, timed around the call, so
regiondet's models and the offline peers are scored by the same code on the same images.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from tqdm import tqdm

from regiondet.data.images import load_rgb
from regiondet.data.sample import Sample
from regiondet.evaluation.text import match_image, text_metrics
from regiondet.inference.predictor import Detector

PolygonFn = Callable[[np.ndarray], list[np.ndarray]]


def evaluate_polygons(detect: PolygonFn, samples: list[Sample], progress: bool = True, desc: str = "evaluate") -> dict:
    """precision, recall, hmean (ICDAR 2015 rules) and latency_ms_median / p90 of detect over samples."""
    matches, seconds = [], []
    for s in tqdm(samples, desc=desc, disable=not progress, leave=False):
        pixels = load_rgb(s.path)
        start = time.perf_counter()
        polys = detect(pixels)
        seconds.append(time.perf_counter() - start)
        scale = np.array([s.width / pixels.shape[1], s.height / pixels.shape[0]], np.float32)
        matches.append(match_image(s.outlines(), s.ignore, [np.asarray(p, np.float32) * scale for p in polys]))
    ms = np.array(seconds) * 1000 if seconds else np.zeros(1)
    return {
        "images": len(samples),
        **text_metrics(matches),
        "latency_ms_median": float(np.median(ms)),
        "latency_ms_p90": float(np.percentile(ms, 90)),
    }


def evaluate_text(detector: Detector, samples: list[Sample], score: float | None = None, progress: bool = True) -> dict:
    """evaluate_polygons of a regiondet text model at its score (or the one given)."""

    def detect(pixels: np.ndarray) -> list[np.ndarray]:
        return detector.predict(pixels, score=score).polygons or []

    res = evaluate_polygons(detect, samples, progress)
    return {"images": res.pop("images"), "score": detector.score if score is None else score, **res}
