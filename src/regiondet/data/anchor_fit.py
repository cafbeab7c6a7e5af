"""How well a config's anchors fit a dataset's boxes, before any training.

The RPN learns a box only from anchors that overlap it: an object whose best anchor has
IoU below `rpn_fg_iou_thresh` trains from one low-quality match at most. Like Ultralytics'
AutoAnchor "best possible recall", the fit compares shapes only (each box against every
anchor shape centred on it, grid offsets ignored), after the config's test-time resize.
"""

from __future__ import annotations

import numpy as np

from regiondet.config import ModelConfig
from regiondet.data.sample import Sample
from regiondet.data.stats import SIZE_BINS, SIZE_LABELS
from regiondet.models.anchors import anchor_shapes
from regiondet.models.sizes import test_sizes


def inference_scale(cfg: ModelConfig, width: int, height: int) -> float:
    """The factor GeneralizedRCNNTransform resizes an image by at inference."""
    short, long = test_sizes(cfg)
    return min(short / min(width, height), long / max(width, height))


def best_anchor_iou(wh: np.ndarray, shapes: np.ndarray) -> np.ndarray:
    """For each (w, h), the highest IoU with any anchor shape sharing its centre."""
    inter = np.minimum(wh[:, None, 0], shapes[None, :, 0]) * np.minimum(wh[:, None, 1], shapes[None, :, 1])
    union = (wh[:, 0] * wh[:, 1])[:, None] + (shapes[:, 0] * shapes[:, 1])[None] - inter
    return (inter / np.maximum(union, 1e-9)).max(1) if len(wh) else np.zeros(0)


def anchor_fit(samples: list[Sample], cfg: ModelConfig) -> dict:
    """Share of the boxes (do-not-care ones left out) whose best anchor reaches the RPN's
    positive IoU, overall and by box side sqrt(area) after the resize."""
    wh = []
    for s in samples:
        k = inference_scale(cfg, s.width, s.height)
        b = s.boxes[~s.ignore]
        wh.append(np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1) * k)
    wh = np.concatenate(wh) if wh else np.zeros((0, 2))
    shapes = anchor_shapes(cfg)
    best = best_anchor_iou(wh, shapes)
    side = np.sqrt(wh[:, 0] * wh[:, 1])
    thresh = cfg.rpn_fg_iou_thresh

    def row(m: np.ndarray) -> dict:
        n = int(m.sum())
        return {
            "boxes": n,
            "best_iou_median": float(np.median(best[m])) if n else None,
            "reach_fg": float((best[m] >= thresh).mean()) if n else None,
            "reach_0.5": float((best[m] >= 0.5).mean()) if n else None,
        }

    bands = {}
    for name, lo, hi in zip(SIZE_LABELS, SIZE_BINS[:-1], SIZE_BINS[1:], strict=True):
        m = (side >= lo) & (side < hi)
        if m.any():
            bands[name] = row(m)
    return {"anchor_shapes": len(shapes), "rpn_fg_iou_thresh": thresh, **row(side >= 0), "by_side": bands}


def format_anchor_fit(fit: dict) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.0f} %"

    lines = [
        f"  anchor fit ({fit['anchor_shapes']} shapes, shape only): {pct(fit['reach_fg'])} of {fit['boxes']} boxes "
        f"have an anchor at IoU >= {fit['rpn_fg_iou_thresh']:g}, {pct(fit['reach_0.5'])} at >= 0.5"
    ]
    for band, r in fit["by_side"].items():
        lines.append(
            f"    side {band} px: {r['boxes']} boxes, {pct(r['reach_fg'])} >= {fit['rpn_fg_iou_thresh']:g}, "
            f"{pct(r['reach_0.5'])} >= 0.5, median best IoU {r['best_iou_median']:.2f}"
        )
    return "\n".join(lines)
