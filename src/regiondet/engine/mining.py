"""Hard examples: images a model raises a false alarm on, written back as a training source.

A first model's false alarms (a hand holding a wallet, a shop sign, a dark rectangle on a
wall) are the images worth showing again: `regiondet data mine-negatives` lists them as a
plain-text SPEC that a config adds to its training data, weighted with `?repeat=`. An
object-free image is listed as `path,,,,,`; an image with objects (a wallet frame whose
phone-free hand fooled the model, say) keeps its boxes of the model's classes, so only what
is really absent is taught as background. Detections of classes a source does not label
(SPEC option labels=) are never counted as false.
"""

from __future__ import annotations

import os
from pathlib import Path

from tqdm import tqdm

from regiondet.data.dataset import load_negatives
from regiondet.data.images import load_rgb
from regiondet.data.sample import Sample
from regiondet.errors import UserError
from regiondet.evaluation.detection import image_outcome, labelled_only
from regiondet.evaluation.scoring import load_eval_sets
from regiondet.inference.predictor import Detector
from regiondet.io import atomic_write_text


def mine_false_alarms(detector: Detector, pool: list[Sample], score: float, progress: bool = True) -> list[dict]:
    """The pool's images with a false alarm at `score` or above (a box matching no object of
    its class at IoU 0.5), highest first: sample, best false score and its label. The pool's
    labels must already be model class names (ClassMapper)."""
    found = []
    for s in tqdm(pool, desc="mining", disable=not progress, leave=False):
        pixels = load_rgb(s.path)
        p = detector.predict(pixels, score=score)
        sx, sy = s.width / pixels.shape[1], s.height / pixels.shape[0]
        pred = {"boxes": p.boxes * [sx, sy, sx, sy], "scores": p.scores, "labels": p.class_ids}
        pred = labelled_only([s], [pred], detector.classes)[0]
        _, false = image_outcome(s, pred, detector.classes, score)
        if false:
            best = int(pred["scores"].argmax())
            found.append({"sample": s, "score": float(pred["scores"][best]), "label": p.labels[0], "false": false})
    return sorted(found, key=lambda r: -r["score"])


def write_hard_examples(path: Path, rows: list[dict], note: str) -> None:
    """The mined images as a `txt:` SPEC file, paths relative to it (so it moves with the
    repository as long as the data folder keeps its place beside it)."""
    lines = [f"# {note}", "# each image: its best false detection (score, label), then its objects (none: path,,,,,)"]
    for r in rows:
        s: Sample = r["sample"]
        rel = os.path.relpath(Path(s.path).resolve(), Path(path).resolve().parent)
        if "," in rel:
            raise UserError("a comma in an image path cannot be written to a txt SPEC", s.path)
        lines.append(f"# {r['score']:.3f} {r['label']}")
        objects = [(b, lab) for b, lab, ig in zip(s.boxes, s.labels, s.ignore, strict=True) if not ig]
        lines += [f"{rel},{b[0]:.1f},{b[1]:.1f},{b[2]:.1f},{b[3]:.1f},{lab}" for b, lab in objects] or [f"{rel},,,,,"]
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


def mine_hard_examples(
    detector: Detector,
    specs: list[str],
    negative_specs: list[str],
    class_map: dict[str, str | None],
    out: Path,
    name: str,
    progress: bool = True,
) -> str:
    """`regiondet data mine-negatives`: search labelled SPECs (objects kept) and object-free ones
    for false alarms at the detector's score, write them to `out`; returns what was found."""
    if not specs and not negative_specs:
        raise UserError("name images to search: labelled SPECs, or object-free ones with --negatives")
    pool = load_eval_sets(detector, specs, None, class_map)[0] + load_negatives(negative_specs)
    rows = mine_false_alarms(detector, pool, detector.score, progress)
    where = ", ".join(specs + negative_specs)
    note = f"false alarms of {name} at score {detector.score:g} on {where}: {len(rows)} of {len(pool)} images"
    write_hard_examples(out, rows, note)
    return note
