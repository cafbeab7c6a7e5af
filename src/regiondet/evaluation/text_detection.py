"""Evaluate a text detector with the ICDAR 2015 protocol (polygon IoU), plus latency."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from regiondet.data.images import load_rgb
from regiondet.data.sample import Sample
from regiondet.evaluation.text import match_image, text_metrics
from regiondet.inference.predictor import Detector


def evaluate_text(detector: Detector, samples: list[Sample], score: float | None = None, progress: bool = True) -> dict:
    """precision, recall, hmean (ICDAR 2015 rules) and latency_ms_median / p90 over samples."""
    matches, seconds = [], []
    for s in tqdm(samples, desc="evaluate", disable=not progress, leave=False):
        pixels = load_rgb(s.path)
        pred = detector.predict(pixels, score=score)
        scale = np.array([s.width / pixels.shape[1], s.height / pixels.shape[0]], np.float32)
        polys = [p * scale for p in pred.polygons or []]
        matches.append(match_image(s.outlines(), s.ignore, polys))
        seconds.append(pred.seconds)
    ms = np.array(seconds) * 1000
    return {
        "images": len(samples),
        "score": detector.score if score is None else score,
        **text_metrics(matches),
        "latency_ms_median": float(np.median(ms)),
        "latency_ms_p90": float(np.percentile(ms, 90)),
    }
