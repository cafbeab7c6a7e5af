"""ICDAR 2015 text detection protocol (the Robust Reading Competition's IoU script), on polygons.

Per image: a detection covering a do-not-care region by more than half of its own area is
set aside; then ground truths and detections are matched one-to-one, greedily in ground-truth
order, at polygon IoU > 0.5, neither side being do-not-care. Precision, recall and H-mean are
totals over all images. Polygons of any vertex count work, so curved sets (CTW1500,
Total-Text) use the same code with polygon IoU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from shapely.geometry import Polygon
from shapely.validation import make_valid


def _poly(points: np.ndarray) -> Polygon:
    p = Polygon(np.asarray(points, float))
    if not p.is_valid:
        p = make_valid(p)
    return p


@dataclass
class ImageMatch:
    matched: int
    gt_care: int
    det_care: int
    iou_sum: float = 0.0  # over the matches: how tightly the outlines fit, beyond passing the threshold
    care_found: np.ndarray | None = None  # per care ground truth, in order: matched or not


def match_image(
    gt_polys: list[np.ndarray], gt_ignore: np.ndarray, det_polys: list[np.ndarray], iou_threshold: float = 0.5
) -> ImageMatch:
    """Matches of one image under the ICDAR 2015 rules."""
    gts = [_poly(p) for p in gt_polys]
    dets = [_poly(p) for p in det_polys]
    gt_ignore = np.asarray(gt_ignore, bool).reshape(-1)
    det_ignore = np.zeros(len(dets), bool)
    dont_care = [g for g, ig in zip(gts, gt_ignore, strict=True) if ig]
    for j, d in enumerate(dets):
        if d.area > 0 and dont_care:
            covered = max(d.intersection(g).area for g in dont_care)
            det_ignore[j] = covered / d.area > 0.5
    gt_used = np.zeros(len(gts), bool)
    det_used = np.zeros(len(dets), bool)
    matched, iou_sum = 0, 0.0
    for i, g in enumerate(gts):
        if gt_ignore[i]:
            continue
        for j, d in enumerate(dets):
            if det_used[j] or det_ignore[j] or gt_used[i]:
                continue
            union = g.union(d).area
            iou = g.intersection(d).area / union if union > 0 else 0.0
            if iou > iou_threshold:
                gt_used[i] = det_used[j] = True
                matched += 1
                iou_sum += iou
    return ImageMatch(matched, int((~gt_ignore).sum()), int((~det_ignore).sum()), iou_sum, gt_used[~gt_ignore])


def text_height(points: np.ndarray) -> float:
    """Short side of the minimum rotated rectangle: a straight word's height at any angle
    (a curved word's also counts its bend)."""
    rect = _poly(points).minimum_rotated_rectangle
    if rect.geom_type != "Polygon":
        return 0.0
    return float(np.linalg.norm(np.diff(np.asarray(rect.exterior.coords), axis=0), axis=1).min())


def size_bands(sizes: np.ndarray, edges: tuple[float, ...]) -> list[tuple[str, np.ndarray]]:
    """(name, mask) per band of `sizes` split at `edges`: "<8", "8-16", ..., ">=32"."""
    bounds = [0.0, *edges, np.inf]
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        name = f"<{hi:g}" if lo == 0 else f">={lo:g}" if hi == np.inf else f"{lo:g}-{hi:g}"
        out.append((name, (sizes >= lo) & (sizes < hi)))
    return out


def recall_by_height(
    matches: list[ImageMatch], heights: list[np.ndarray], edges: tuple[float, ...] = (8, 16, 32)
) -> dict[str, dict]:
    """Recall of care words by height band (px in the source image): where the misses are."""
    found = np.concatenate([m.care_found for m in matches]) if matches else np.zeros(0, bool)
    h = np.concatenate(heights) if heights else np.zeros(0)
    return {
        name: {"words": int(band.sum()), "recall": float(found[band].mean()) if band.any() else None}
        for name, band in size_bands(h, edges)
    }


def text_metrics(matches: list[ImageMatch]) -> dict[str, float]:
    """precision, recall, hmean, the matches' mean IoU, and the counts over a set of images."""
    m = sum(x.matched for x in matches)
    n_gt = sum(x.gt_care for x in matches)
    n_det = sum(x.det_care for x in matches)
    recall = m / n_gt if n_gt else 0.0
    precision = m / n_det if n_det else 0.0
    hmean = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    mean_iou = sum(x.iou_sum for x in matches) / m if m else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "hmean": hmean,
        "mean_iou": mean_iou,
        "matched": m,
        "gt_care": n_gt,
        "det_care": n_det,
    }
