"""How well a config's anchors fit a dataset's boxes, before any training.

The RPN learns a box only from anchors that overlap it: an object whose best anchor has
IoU below `rpn_fg_iou_thresh` trains from one low-quality match at most. Like Ultralytics'
AutoAnchor "best possible recall", the fit compares shapes only (each box against every
anchor shape centred on it, grid offsets ignored), after the config's test-time resize.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np

from regiondet.config import ModelConfig
from regiondet.data.sample import Sample
from regiondet.data.stats import SIZE_BINS, SIZE_LABELS, dataset_stats, format_stats
from regiondet.errors import UserError
from regiondet.models.anchors import anchor_levels, anchor_shapes
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


def care_box_shapes(samples: list[Sample], cfg: ModelConfig) -> np.ndarray:
    """(N, 2) widths and heights of the boxes that are not do-not-care, at the test size."""
    wh = []
    for s in samples:
        k = inference_scale(cfg, s.width, s.height)
        b = s.boxes[~s.ignore]
        wh.append(np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1) * k)
    return np.concatenate(wh) if wh else np.zeros((0, 2))


def anchor_fit(samples: list[Sample], cfg: ModelConfig) -> dict:
    """Share of the boxes (do-not-care ones left out) whose best anchor reaches the RPN's
    positive IoU, overall and by box side sqrt(area) after the resize."""
    wh = care_box_shapes(samples, cfg)
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


def suggest_anchor_sizes(samples: list[Sample], cfg: ModelConfig) -> list:
    """anchor_sizes of the config's form (as many maps, as many sizes per map) fitted to the data.

    The sizes form one geometric ladder, smallest on the finest map, as FPN levels do; its
    first size (quarter-octave steps from 8 px) and its ratio (a quarter octave to one
    octave) are searched for the most boxes reaching the RPN's positive IoU plus the most
    reaching 0.5, so that no size band is given up for the bulk. The aspect ratios are kept
    (AutoAnchor also evolves them; text needs them wide, which a user sets).
    """
    wh = care_box_shapes(samples, cfg)
    if not len(wh):
        raise UserError("no boxes to fit anchors to (every box is do-not-care, or there are none)")
    levels = anchor_levels(cfg)
    n = sum(len(level) for level in levels)
    best: tuple = ()
    for start in range(48):
        for per_octave in (4, 3, 2, 1.5, 1):
            sizes = [round(8 * 2 ** (start / 4 + i / per_octave)) for i in range(n)]
            iou = best_anchor_iou(wh, anchor_shapes(replace(cfg, anchor_sizes=sizes)))
            score = ((iou >= cfg.rpn_fg_iou_thresh).mean() + (iou >= 0.5).mean(), float(np.median(iou)))
            if not best or score > best[0]:
                best = (score, sizes)
    sizes = best[1]
    if all(len(level) == 1 for level in levels):
        return sizes
    out, at = [], 0
    for level in levels:
        out.append(sizes[at : at + len(level)])
        at += len(level)
    return out


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


def describe_spec(spec: str, samples: list[Sample], cfg: ModelConfig | None, suggest: bool) -> tuple[dict, str]:
    """`regiondet data stats` for one SPEC: (figures, text). With a model config, how many boxes
    its anchors reach; with `suggest`, anchor sizes fitted to the data in the config's form."""
    st = dataset_stats(samples)
    text = format_stats(spec, st)
    if cfg is None:
        return st, text
    st["anchor_fit"] = anchor_fit(samples, cfg)
    text += "\n" + format_anchor_fit(st["anchor_fit"])
    if suggest:
        sizes = suggest_anchor_sizes(samples, cfg)
        fit = anchor_fit(samples, replace(cfg, anchor_sizes=sizes))
        st["anchor_suggestion"] = {"anchor_sizes": sizes, **fit}
        flat = json.dumps(sizes).replace(" ", "")
        text += f"\n  suggested (same form, --set model.anchor_sizes={flat}):\n" + format_anchor_fit(fit)
    return st, text
