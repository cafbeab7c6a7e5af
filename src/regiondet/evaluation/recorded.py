"""Detections read back from a file, to be scored like a model's: `regiondet evaluate --detections`.

A text model's evaluation here costs half an hour; its detections, once written by
`regiondet evaluate --save-detections` or `regiondet detect --score LOW` (one JSON line per
image, Prediction.to_json), can be scored again in seconds at other thresholds or on other
subsets, and detections from any other tool written in the same form get the same evaluator
(MMDetection's `test.py --out` then `eval_metric.py`, detectron2's saved
instances_predictions, do the same).
"""

from __future__ import annotations

import json
from pathlib import Path

from regiondet.data.sample import Sample
from regiondet.errors import UserError
from regiondet.inference.prediction import Prediction
from regiondet.inference.predictor import Detector


def detection_line(sample: Sample, pred: Prediction) -> dict:
    """One image's detections as `regiondet detect` prints them: its file, then Prediction.to_json."""
    return {"file": str(sample.path), **pred.to_json()}


class RecordedPredictions:
    """The lines of a detections file by image: `prediction(sample)`, the `task` they are of
    (text when they carry polygons), the class names in order of first appearance, and the
    score the saving evaluation used (`eval_score`), if any."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.is_file():
            raise UserError("detections file not found", path)
        self.path = path
        self.classes: list[str] = []
        self.by_path: dict[Path, Prediction] = {}
        self.by_name: dict[str, list[Path]] = {}
        self.line_of: dict[Path, int] = {}  # each image's line
        self.label_line: dict[str, int] = {}  # each label's first line
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
            if resolved in self.line_of:
                raise UserError(f"{file} has a line already (line {self.line_of[resolved]})", path, i)
            self.line_of[resolved] = i
            try:
                self.by_path[resolved] = Prediction.from_json(line, self.classes)
            except UserError as e:
                raise UserError(str(e), path, i) from None
            self.by_name.setdefault(file.name, []).append(resolved)
            for label in self.by_path[resolved].labels:
                self.label_line.setdefault(label, i)
        if not self.by_path:
            raise UserError("no detections in the file (an empty run?)", path)
        self.task = "text" if text else "box"
        saved = eval_scores.pop() if len(eval_scores) == 1 else None
        self.eval_score = float(saved) if isinstance(saved, int | float) else None
        if not self.classes:
            self.classes = ["text" if text else "object"]

    def add_classes(self, names: list[str]) -> None:
        """Add the data's classes the detections never name (their AP is then 0, not absent)."""
        for n in names:
            if n.lower() not in {c.lower() for c in self.classes}:
                self.classes.append(n)

    def foreign_labels(self, data_labels: set[str]) -> list[str]:
        """Labels of the detections that no object of the data has, each with its first line:
        their boxes can only be false alarms (a typo, or another model's class list)."""
        known = {n.lower() for n in data_labels}
        return [f"'{n}' (line {i})" for n, i in self.label_line.items() if n.lower() not in known]

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


def default_score(source: Detector | RecordedPredictions, score: float | None = None) -> float:
    """The score the rates are read at: the one given, else the model's own, else (recorded
    detections) the one their saving evaluation used, else every detection (0)."""
    if score is not None:
        return score
    if isinstance(source, Detector):
        return source.score
    return source.eval_score if source.eval_score is not None else 0.0
