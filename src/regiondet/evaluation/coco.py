"""COCO AP@[.5:.95], AP50, AP75 and the size splits through faster-coco-eval (not a home-made copy).

The size splits (COCO's areas: small < 32x32 px, medium < 96x96, large above) say where a
detector loses: e.g. a recall ceiling on large objects points at boxes around parts.
"""

from __future__ import annotations

import contextlib
import io

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster

from regiondet.data.formats.coco import to_coco
from regiondet.data.sample import Sample

# key -> index in COCOeval.stats (AP over IoU 0.5:0.95; AR with at most 100 detections)
SPLITS = {
    "coco_ap_small": 3,
    "coco_ap_medium": 4,
    "coco_ap_large": 5,
    "coco_ar100": 8,
    "coco_ar_small": 9,
    "coco_ar_medium": 10,
    "coco_ar_large": 11,
}


def coco_metrics(
    samples: list[Sample], predictions: list[dict[str, np.ndarray]], classes: list[str]
) -> dict[str, float | None]:
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
    if not gt["annotations"]:
        return {k: 0.0 for k in ("coco_ap", "coco_ap50", "coco_ap75")} | dict.fromkeys(SPLITS)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt)
        ev = COCOeval_faster(coco_gt, coco_gt.loadRes(dets), iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    s = ev.stats
    out = {"coco_ap": float(s[0]), "coco_ap50": float(s[1]), "coco_ap75": float(s[2])}
    # COCO writes -1 for a size range without objects: None (JSON null), not a score of -1
    return out | {k: (float(s[i]) if s[i] >= 0 else None) for k, i in SPLITS.items()}
