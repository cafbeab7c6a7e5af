"""A model's detections on one image, and their one JSON form.

`regiondet detect` prints it (one line per image or video frame), `evaluate --save-detections`
writes it, and `evaluate --detections` reads it back: one rounding everywhere (boxes to 0.01 px,
scores to 1e-6), fine enough that detections read back rank and score as they did.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from regiondet.errors import UserError


def is_score(value: float) -> bool:
    """A usable score threshold: a number from 0 to 1 (a score of 2 or nan finds nothing, -1 all)."""
    return 0 <= value <= 1  # also false for nan


@dataclass
class Prediction:
    """Detections on one image, in its pixel coordinates, best score first."""

    boxes: np.ndarray  # (N, 4) xyxy
    labels: list[str]
    scores: np.ndarray  # (N,)
    seconds: float = 0.0
    class_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    polygons: list[np.ndarray] | None = None  # text models: (2k, 2) outlines, top edge then bottom
    # one object, one box: with classes merged (model.box_cross_class_iou), each box's score for
    # every class it was also boxed as ({"camera": 0.91, "phone": 0.42}); its label is the likelier
    class_scores: list[dict[str, float]] | None = None

    def above(self, score: float) -> Prediction:
        """The detections at `score` or above (the order is kept: best first)."""
        keep = np.flatnonzero(np.asarray(self.scores) >= score)
        return Prediction(
            self.boxes[keep],
            [self.labels[i] for i in keep],
            self.scores[keep],
            self.seconds,
            self.class_ids[keep] if len(self.class_ids) == len(self.scores) else self.class_ids,
            None if self.polygons is None else [self.polygons[i] for i in keep],
            None if self.class_scores is None else [self.class_scores[i] for i in keep],
        )

    def per_class(self, classes: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes, scores, class ids) with each box once for every class it was called at that
        class's score (class_scores), best first: what per-class AP scores, so merging a camera's
        phone box into its camera box shows one box without costing the phone class its hit."""
        if self.class_scores is None:
            return self.boxes, self.scores, self.class_ids
        rows = [(i, classes.index(c) + 1, v) for i, cs in enumerate(self.class_scores) for c, v in cs.items()]
        if not rows:
            return self.boxes[:0], self.scores[:0], np.zeros(0, np.int64)
        index, ids, scores = (np.array(x) for x in zip(*rows, strict=True))
        order = np.argsort(-scores, kind="stable")
        return self.boxes[index[order]], scores[order].astype(np.float32), ids[order].astype(np.int64)

    def to_json(self) -> dict:
        """boxes, labels, scores (polygons for text models) and ms: what detect prints per image."""
        out = {
            "boxes": [[round(float(v), 2) for v in b] for b in self.boxes],
            "labels": list(self.labels),
            "scores": [round(float(s), 6) for s in self.scores],
        }
        if self.polygons is not None:
            out["polygons"] = [[[round(float(x), 2), round(float(y), 2)] for x, y in p] for p in self.polygons]
        if self.class_scores is not None:
            out["class_scores"] = [{k: round(float(v), 6) for k, v in c.items()} for c in self.class_scores]
        out["ms"] = round(self.seconds * 1000, 1)
        return out

    @classmethod
    def from_json(cls, line: dict, classes: list[str] | None = None) -> Prediction:
        """A detect line read back, best score first. Class ids follow `classes` (1-based), and a
        label it lacks is appended to it, so ids stay stable over the lines of one file."""
        classes = [] if classes is None else classes
        try:
            boxes = np.asarray(line.get("boxes", []), np.float32).reshape(-1, 4)
            scores = np.asarray(line.get("scores", [1.0] * len(boxes)), np.float32).reshape(-1)
            names = [str(n) for n in line.get("labels", ["text"] * len(boxes))]
            polygons = line.get("polygons")
            polygons = None if polygons is None else [np.asarray(p, np.float32).reshape(-1, 2) for p in polygons]
            seconds = float(line.get("ms", 0.0)) / 1000
            class_scores = line.get("class_scores")
            if class_scores is not None:
                class_scores = [{str(k): float(v) for k, v in c.items()} for c in class_scores]
        except (TypeError, ValueError, AttributeError) as e:
            raise UserError(f"malformed detections ({e})") from None
        if not np.isfinite(scores).all() or not np.isfinite(boxes).all():
            raise UserError("a score or box coordinate is not a finite number")
        if ((boxes[:, 2:] < boxes[:, :2]).any(1)).any():
            raise UserError("a box with x2 < x1 or y2 < y1 (boxes are x1, y1, x2, y2)")
        counts = {len(boxes), len(scores), len(names)} | ({len(polygons)} if polygons is not None else set())
        counts |= {len(class_scores)} if class_scores is not None else set()
        if len(counts) != 1:
            raise UserError("boxes, scores, labels (and polygons, class_scores) differ in length")
        for n in [*names, *(k for c in class_scores or [] for k in c)]:
            if n not in classes:
                classes.append(n)
        order = np.argsort(-scores, kind="stable")  # evaluators expect the best score first
        ids = np.array([classes.index(n) + 1 for n in names], np.int64)[order]
        return cls(
            boxes[order],
            [names[i] for i in order],
            scores[order],
            seconds,
            ids,
            None if polygons is None else [polygons[i] for i in order],
            None if class_scores is None else [class_scores[i] for i in order],
        )
