"""COCO AP@[.5:.95], AP50 and AP75 through faster-coco-eval (not a home-made copy)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from regiondet.data.formats.coco import to_coco
from regiondet.data.sample import Sample


def coco_metrics(
    samples: list[Sample], predictions: list[dict[str, np.ndarray]], classes: list[str]
) -> dict[str, float]:
    """predictions[i] has 'boxes' (xyxy), 'scores' and 'labels' (1-based) for samples[i]."""
    gt = to_coco(samples, classes)
    dets = []
    for img_id, p in enumerate(predictions, 1):
        for box, score, label in zip(p["boxes"], p["scores"], p["labels"], strict=True):
            x1, y1, x2, y2 = (float(v) for v in box)
            dets.append(
                {
                    "image_id": img_id,
                    "category_id": int(label),
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "score": float(score),
                }
            )
    if not dets or not gt["annotations"]:
        return {"coco_ap": 0.0, "coco_ap50": 0.0, "coco_ap75": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt)
        ev = COCOeval_faster(coco_gt, coco_gt.loadRes(dets), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    return {"coco_ap": float(s[0]), "coco_ap50": float(s[1]), "coco_ap75": float(s[2])}
