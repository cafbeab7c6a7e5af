"""Detections read back from a file and scored like a model: `regiondet evaluate --detections`.

A text model's evaluation here costs half an hour; its detections, once written by
`regiondet evaluate --save-detections` or `regiondet detect --score LOW` (one JSON line per
image: file, boxes, labels, scores, and polygons for text), can be scored again in seconds at
other thresholds or on other subsets, and detections from any other tool written in the same
form get the same evaluator
(MMDetection's `test.py --out` then `eval_metric.py`, detectron2's saved
instances_predictions, do the same).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from regiondet.config import Config, ModelConfig
from regiondet.data.sample import Sample
from regiondet.errors import UserError
from regiondet.inference.predictor import Prediction


def _prediction(line: dict, labels: list[str], where: tuple[Path, int]) -> Prediction:
    """One detect line as a Prediction (class ids follow `labels`, in order of first appearance)."""
    try:
        boxes = np.asarray(line.get("boxes", []), np.float32).reshape(-1, 4)
        scores = np.asarray(line.get("scores", [1.0] * len(boxes)), np.float32).reshape(-1)
        names = [str(n) for n in line.get("labels", ["text"] * len(boxes))]
        polygons = line.get("polygons")
        polygons = None if polygons is None else [np.asarray(p, np.float32).reshape(-1, 2) for p in polygons]
    except (TypeError, ValueError) as e:
        raise UserError(f"malformed detections ({e})", *where) from None
    counts = {len(boxes), len(scores), len(names)} | ({len(polygons)} if polygons is not None else set())
    if len(counts) != 1:
        raise UserError("boxes, scores, labels (and polygons) differ in length", *where)
    for n in names:
        if n not in labels:
            labels.append(n)
    order = np.argsort(-scores, kind="stable")  # evaluators expect the best score first
    ids = np.array([labels.index(n) + 1 for n in names], np.int64)[order]
    return Prediction(
        boxes[order],
        [names[i] for i in order],
        scores[order],
        float(line.get("ms", 0.0)) / 1000,
        ids,
        None if polygons is None else [polygons[i] for i in order],
    )


def detection_line(sample: Sample, pred: Prediction) -> dict:
    """One image's detections as `regiondet detect` prints them (what RecordedDetector reads),
    with finer rounding than detect's (scores to 1e-6, not 1e-4) so that read back they rank
    and score as they did."""
    line = {
        "file": str(sample.path),
        "boxes": [[round(float(v), 2) for v in b] for b in pred.boxes],
        "labels": list(pred.labels),
        "scores": [round(float(v), 6) for v in pred.scores],
    }
    if pred.polygons is not None:
        line["polygons"] = [[[round(float(x), 2), round(float(y), 2)] for x, y in q] for q in pred.polygons]
    return {**line, "ms": round(pred.seconds * 1000, 1)}


class RecordedDetector:
    """Detector's interface over a detections file: `classes`, `score`, `config` (task and
    classes), and the recorded Prediction of each image by its path."""

    model = None  # no network: no proposals to record

    def __init__(self, path: str | Path, score: float | None = None):
        path = Path(path)
        if not path.is_file():
            raise UserError("detections file not found", path)
        self.path, self.labels = path, []
        self.by_path: dict[Path, Prediction] = {}
        self.by_name: dict[str, list[Path]] = {}
        text, eval_scores = False, set()
        for i, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                file = Path(line["file"])
            except (json.JSONDecodeError, KeyError, TypeError):
                raise UserError("not a line of regiondet detect's JSON (file, boxes, scores, ...)", path, i) from None
            if "frame" in line:
                raise UserError("a video frame: evaluate scores images", path, i)
            text |= "polygons" in line
            eval_scores.add(line.get("eval_score"))
            resolved = file.resolve()
            self.by_path[resolved] = _prediction(line, self.labels, (path, i))
            self.by_name.setdefault(file.name, []).append(resolved)
        if not self.by_path:
            raise UserError("no detections in the file (an empty run?)", path)
        self.task = "text" if text else "box"
        # the score the saving evaluation used, else everything (detect applied its own threshold)
        saved = eval_scores.pop() if len(eval_scores) == 1 else None
        self.score = score if score is not None else float(saved) if isinstance(saved, int | float) else 0.0
        self.classes = list(self.labels) or ["text" if text else "object"]
        self.config = Config(model=ModelConfig(task=self.task, classes=self.classes))

    def with_classes(self, names: list[str]) -> None:
        """Add the data's classes the detections never name (their AP is then 0, not absent)."""
        for n in names:
            if n.lower() not in {c.lower() for c in self.classes}:
                self.classes.append(n)
        self.config.model.classes = self.classes

    def require(self, samples: list[Sample]) -> None:
        """Fail before any scoring when some images have no line (how many, and the first)."""
        missing = [s.path for s in samples if self._find(s) is None]
        if missing:
            more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
            raise UserError(f"no detections for {missing[0]}{more} (run detect on every image of the data)", self.path)

    def _find(self, sample: Sample) -> Prediction | None:
        pred = self.by_path.get(Path(sample.path).resolve())
        named = self.by_name.get(Path(sample.path).name, [])
        return pred if pred is not None or len(named) != 1 else self.by_path[named[0]]

    def prediction(self, sample: Sample) -> Prediction:
        """The recorded detections of this sample's image: by path, else by a file name that
        only one line has (the detect run may have started in another folder)."""
        pred = self._find(sample)
        if pred is None:
            self.require([sample])
        return pred
