"""One way to score a model, or a file of its detections, on labelled images: `evaluate`, the
validation of each training epoch, the grid's cells and the box benchmark all come here."""

from __future__ import annotations

import sys
from pathlib import Path

from regiondet.data.dataset import ClassMapper, load_labelled, load_negatives
from regiondet.data.sample import Sample
from regiondet.data.spec import load_spec
from regiondet.evaluation.detection import evaluate
from regiondet.evaluation.recorded import RecordedPredictions
from regiondet.evaluation.text_detection import evaluate_text
from regiondet.inference.predictor import Detector


def source_task(source: Detector | RecordedPredictions) -> str:
    return source.config.model.task if isinstance(source, Detector) else source.task


def load_eval_sets(
    source: Detector | RecordedPredictions,
    specs: list[str],
    negative_specs: list[str] | None = None,
    class_map: dict[str, str | None] | None = None,
) -> tuple[list[Sample], list[Sample]]:
    """(labelled samples, object-free samples) for `source`: labels mapped to a model's classes
    through its training class_map and `class_map`; recorded detections take the data's names
    as they are (`class_map` applied) and learn the classes they never named, which score 0."""
    if isinstance(source, Detector):
        samples = load_labelled(specs, source.classes, {**source.config.data.class_map, **(class_map or {})})
    else:
        names = {k.lower(): v for k, v in (class_map or {}).items()}
        raw = [s for spec in specs for s in load_spec(spec)]
        source.add_classes([t for s in raw for lab in s.labels if (t := names.get(lab.lower(), lab))])
        samples = ClassMapper(source.classes, class_map).apply_all(raw)
        # a source that boxes only some classes (labels=) says nothing of the others: not foreign
        if all(s.labelled is None for s in raw):
            foreign = source.foreign_labels({lab for s in samples for lab in s.labels})
            if foreign:
                print(
                    f"regiondet: {source.path}: labels no object of the data has, scored as false alarms: "
                    + ", ".join(foreign),
                    file=sys.stderr,
                )
    negatives = load_negatives(negative_specs or [])
    if isinstance(source, RecordedPredictions):
        source.require(samples + negatives)
    return samples, negatives


def evaluate_model(
    source: Detector | RecordedPredictions,
    samples: list[Sample],
    negatives: list[Sample] | None = None,
    score: float | None = None,
    voc07: bool = False,
    plot_path: Path | None = None,
    progress: bool = True,
    saved: list[dict] | None = None,
) -> dict:
    """The task's figures: boxes (VOC/COCO AP, lens AP, no-box and false-alarm rates, latency,
    PR curves at `plot_path`) or text (ICDAR 2015 P/R/H-mean and its IoU/score ladders).
    `saved` collects each image's detections as detect's JSON lines."""
    if source_task(source) == "text":
        return evaluate_text(source, samples, score, progress=progress, saved=saved)
    return evaluate(source, samples, negatives or None, score, voc07, plot_path, progress=progress, saved=saved)
