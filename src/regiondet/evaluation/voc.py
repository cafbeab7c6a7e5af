"""Pascal VOC average precision at one IoU threshold, over a whole set, per class."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class APResult:
    ap: float
    precision: np.ndarray
    recall: np.ndarray
    num_gt: int
    num_det: int


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between xyxy boxes a (N, 4) and b (M, 4), continuous coordinates."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-12)


def average_precision(recall: np.ndarray, precision: np.ndarray, voc07: bool = False) -> float:
    """Area under the interpolated PR curve: all-point (VOC2010+) or 11-point (VOC2007)."""
    if voc07:
        points = [precision[recall >= t].max() if np.any(recall >= t) else 0.0 for t in np.linspace(0, 1, 11)]
        return float(np.mean(points))
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def voc_ap(
    detections: list[tuple[np.ndarray, np.ndarray]],
    ground_truth: list[tuple[np.ndarray, np.ndarray]],
    iou_threshold: float = 0.5,
    voc07: bool = False,
) -> APResult:
    """AP of one class.

    detections[i] = (boxes (K, 4), scores (K,)) of image i; ground_truth[i] = (boxes (G, 4),
    ignore (G,)). Detections are ranked over the whole set; each ground truth is matched
    once; a detection whose best match is an ignored (difficult) box counts as neither a
    true nor a false positive.
    """
    num_gt = int(sum((~ig).sum() for _, ig in ground_truth))
    rows = [(img, s, b) for img, (boxes, scores) in enumerate(detections) for b, s in zip(boxes, scores, strict=True)]
    rows.sort(key=lambda r: -r[1])
    used = [np.zeros(len(g[0]), bool) for g in ground_truth]
    tp, fp = np.zeros(len(rows)), np.zeros(len(rows))
    for k, (img, _, box) in enumerate(rows):
        gt_boxes, ignore = ground_truth[img]
        if len(gt_boxes) == 0:
            fp[k] = 1
            continue
        ious = iou_matrix(box[None], gt_boxes)[0]
        j = int(ious.argmax())
        if ious[j] < iou_threshold:
            fp[k] = 1
        elif ignore[j]:
            continue
        elif not used[img][j]:
            tp[k], used[img][j] = 1, True
        else:
            fp[k] = 1
    ctp, cfp = np.cumsum(tp), np.cumsum(fp)
    recall = ctp / max(num_gt, 1)
    precision = ctp / np.maximum(ctp + cfp, np.finfo(float).eps)
    ap = average_precision(recall, precision, voc07) if num_gt else float("nan")
    return APResult(ap, precision, recall, num_gt, len(rows))
