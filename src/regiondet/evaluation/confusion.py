"""Which class a detector calls each object at its operating score: a detection confusion
matrix, as Ultralytics draws it, so "cameras boxed as phones" is a count, not a guess."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.ops import box_iou

from regiondet.data.sample import Sample

BACKGROUND = "background"


def confusion_matrix(
    samples: list[Sample], preds: list[dict], classes: list[str], score: float, iou: float = 0.5
) -> dict[str, dict[str, int]]:
    """counts[true][predicted] over the detections at `score`, `background` on both sides.

    Each object is matched to at most one detection of any class (best score first, the
    free object it overlaps most at IoU >= `iou`): its row says what the detector called it,
    `background` when nothing did (a miss). A detection matching no object is a false alarm
    (row `background`), unless its class is one the image's source does not label (it may be
    an unboxed object: counted nowhere). Objects marked ignore, and detections on them, count
    nowhere. `preds` hold every class's detections, labels as 1-based indices into `classes`."""
    names = [*classes, BACKGROUND]
    counts = {t: dict.fromkeys(names, 0) for t in names}
    lower = [c.lower() for c in classes]
    for s, p in zip(samples, preds, strict=True):
        keep = np.asarray(p["scores"]) >= score
        boxes, labels = np.asarray(p["boxes"])[keep], np.asarray(p["labels"])[keep]
        order = np.argsort(-np.asarray(p["scores"])[keep], kind="stable")
        truth = [classes[lower.index(lab.lower())] if lab.lower() in lower else None for lab in s.labels]
        overlap = (
            box_iou(torch.as_tensor(boxes).float(), torch.as_tensor(s.boxes).float()).numpy()
            if len(boxes) and len(s.boxes)
            else np.zeros((len(boxes), len(s.boxes)))
        )
        match = greedy_match(overlap, order, ~s.ignore, iou)
        for d, g in zip(order, match[order], strict=True):
            said = classes[int(labels[d]) - 1]
            if g >= 0:
                if not s.ignore[g] and truth[g] is not None:
                    counts[truth[g]][said] += 1
            elif s.labels_class(said):
                counts[BACKGROUND][said] += 1
        taken = np.zeros(len(s.boxes), bool)
        taken[match[match >= 0]] = True
        for g in np.flatnonzero(~taken & ~s.ignore):
            if truth[g] is not None:
                counts[truth[g]][BACKGROUND] += 1
    return counts


def greedy_match(overlap: np.ndarray, order: np.ndarray, care: np.ndarray, iou: float) -> np.ndarray:
    """The object each detection finds (-1: none), detections in `order` (best score first), each
    taking the free object it overlaps most at IoU >= `iou`; an object that does not count
    (`care` False) takes any number of detections, so none of them is a false alarm."""
    match = np.full(len(overlap), -1)
    found = np.zeros(overlap.shape[1], bool)
    for d in order:
        free = np.where(found, -1.0, overlap[d])
        g = int(np.argmax(free)) if len(free) else -1
        if g >= 0 and free[g] >= iou:
            match[d] = g
            found[g] = care[g]
    return match
