"""Evaluate a detector on a labelled set and on object-free images: the thesis's figures."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou, nms
from tqdm import tqdm

from regiondet.data.images import load_rgb
from regiondet.data.sample import Sample
from regiondet.evaluation.coco import coco_metrics
from regiondet.evaluation.confusion import confusion_matrix, greedy_match
from regiondet.evaluation.proposals import ProposalRecorder, box_side, proposal_recall
from regiondet.evaluation.recorded import RecordedPredictions, default_score, detection_line
from regiondet.evaluation.text import size_bands
from regiondet.evaluation.voc import APResult, voc_ap
from regiondet.inference.predictor import Detector
from regiondet.models.sizes import scale_of, test_sizes


def _predict_all(
    detector: Detector | RecordedPredictions,
    samples: list[Sample],
    desc: str,
    progress: bool,
    saved: list[dict] | None = None,
) -> tuple[list[dict], list[float]]:
    """Every detection of each sample (score >= 0), in the sample's pixels; with `saved`, also
    as detect's JSON lines, which --detections reads back."""
    preds, seconds = [], []
    for s in tqdm(samples, desc=desc, disable=not progress, leave=False):
        if isinstance(detector, RecordedPredictions):  # read back, in the image's own pixels
            p = detector.prediction(s)
            boxes = p.boxes
        else:
            pixels = load_rgb(s.path)
            p = detector.predict(pixels, score=0.0)
            sx, sy = s.width / pixels.shape[1], s.height / pixels.shape[0]
            boxes = p.boxes * np.array([sx, sy, sx, sy], np.float32)
        scaled = replace(p, boxes=boxes)
        each_boxes, each_scores, each_ids = scaled.per_class(detector.classes)
        preds.append({"boxes": each_boxes, "scores": each_scores, "labels": each_ids})
        seconds.append(p.seconds)
        if saved is not None:
            saved.append(detection_line(s, scaled))
    return preds, seconds


def labelled_only(samples: list[Sample], preds: list[dict], classes: list[str]) -> list[dict]:
    """Each image's detections of the classes its source labels: on a set that boxes only
    phones, a camera detection can be neither right nor wrong, so it is not scored."""
    out = []
    for s, p in zip(samples, preds, strict=True):
        if s.labelled is None:
            out.append(p)
            continue
        ids = [k for k, c in enumerate(classes, 1) if s.labels_class(c)]
        keep = np.isin(p["labels"], ids)
        out.append({k: v[keep] for k, v in p.items()})
    return out


LENS_NMS_IOU = 0.5  # merging classes: boxes overlapping more are one box, as one class's NMS keeps


def lens_ap(samples: list[Sample], preds: list[dict], voc07: bool = False) -> APResult:
    """AP50 with every class counted as one ("a lens is in view"), what an alert needs: a phone
    called a camera still finds it. The classes' boxes are merged as a one-class detector would
    give them: of a camera box and a phone box on the same object (IoU > LENS_NMS_IOU) only the
    better one stays, else the second would count as a false lens. Unboxed objects of a class a
    source does not label count among the false ones, so on partly labelled sets this is a lower
    bound."""
    gts = [(s.boxes, s.ignore) for s in samples]
    dets = []
    for p in preds:
        boxes, scores = torch.as_tensor(p["boxes"]).float(), torch.as_tensor(p["scores"]).float()
        keep = nms(boxes, scores, LENS_NMS_IOU).numpy() if len(scores) else np.zeros(0, np.int64)
        dets.append((np.asarray(p["boxes"])[keep], np.asarray(p["scores"])[keep]))
    return voc_ap(dets, gts, 0.5, voc07)


def per_class_ap(
    samples: list[Sample], preds: list[dict], classes: list[str], voc07: bool = False
) -> dict[str, APResult]:
    out = {}
    for k, name in enumerate(classes, 1):
        gts = []
        for s in samples:
            mask = np.array([lab.lower() == name.lower() for lab in s.labels], bool)
            gts.append((s.boxes[mask], s.ignore[mask]))
        dets = [(p["boxes"][p["labels"] == k], p["scores"][p["labels"] == k]) for p in preds]
        out[name] = voc_ap(dets, gts, 0.5, voc07)
    return out


def evaluate(
    detector: Detector | RecordedPredictions,
    samples: list[Sample],
    negatives: list[Sample] | None = None,
    score: float | None = None,
    voc07: bool = False,
    plot_path: Path | None = None,
    progress: bool = True,
    saved: list[dict] | None = None,
) -> dict:
    """Metrics dict: map50, ap50_per_class, coco_ap/ap50/ap75 and by size (coco.SPLITS), no_detection_rate,
    negatives_with_detection_rate, latency_ms_median / p90, counts, and for torchvision models
    proposal_recall (objects the RPN offered a box for, by COCO size).

    Samples' labels must already be model class names (see ClassMapper). `saved` collects every
    image's detections as JSON lines (evaluate --save-detections).
    """
    score = default_score(detector, score)
    classes = detector.classes
    with ProposalRecorder(getattr(detector, "model", None)) as recorder:
        preds, seconds = _predict_all(detector, samples, "evaluate", progress, saved)
    lens = lens_ap(samples, preds, voc07).ap if len(classes) > 1 else None
    all_preds = preds
    lens_preds = preds if len(classes) > 1 else None
    preds = labelled_only(samples, preds, classes)
    aps = per_class_ap(samples, preds, classes, voc07)
    valid = [r.ap for r in aps.values() if not np.isnan(r.ap)]
    with_objects = [i for i, s in enumerate(samples) if (~s.ignore).any()]
    result = {
        "images": len(samples),
        "objects": int(sum((~s.ignore).sum() for s in samples)),
        "score": score,
        "map50": float(np.mean(valid)) if valid else float("nan"),
        "ap50_per_class": {c: r.ap for c, r in aps.items()},
        "lens_ap50": lens,
        **coco_metrics(samples, preds, classes),
        "no_detection_rate": _share_missed(preds, with_objects, score, float("nan")),
        # images with no box of any class (a lens boxed as the other class still alerts)
        "lens_no_detection_rate": _share_missed(lens_preds, with_objects, score) if lens_preds else None,
        "negatives_with_detection_rate": None,
        "negatives": 0,
    }
    proposals = recorder.per_image(len(samples))  # a torchvision model (ONNX has no RPN to ask)
    if proposals is not None:
        result["proposal_recall"] = proposal_recall(samples, proposals)
    neg_preds = []
    if negatives:
        neg = evaluate_negatives(detector, negatives, score, progress, saved)
        neg_preds, neg_seconds = neg.pop("predictions"), neg.pop("seconds")
        result.update(neg)
        seconds += neg_seconds
    result["recall_by_size"] = recall_by_size(samples, preds, classes, score, model_scale(detector))
    result["rates_by_score"] = rates_by_score(preds, with_objects, neg_preds, lens_preds)
    result["failures"] = failures(samples + (negatives or []), preds + neg_preds, classes, score)
    result["confusion"] = confusion_matrix(samples + (negatives or []), all_preds + neg_preds, classes, score)
    ms = np.array(seconds) * 1000
    result["latency_ms_median"] = float(np.median(ms))
    result["latency_ms_p90"] = float(np.percentile(ms, 90))
    if plot_path is not None:
        plot_pr_curves(aps, Path(plot_path))
    return result


def evaluate_negatives(
    detector: Detector | RecordedPredictions,
    negatives: list[Sample],
    score: float,
    progress: bool = True,
    saved: list[dict] | None = None,
) -> dict:
    """The share of object-free images with a detection at `score` (a false alarm), with the
    predictions and seconds per image."""
    preds, seconds = _predict_all(detector, negatives, "negatives", progress, saved)
    return {
        "negatives": len(negatives),
        "negatives_with_detection_rate": _share_fired(preds, score),
        "predictions": preds,
        "seconds": seconds,
    }


SCORE_LADDER = (0.1, 0.2, 0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def rates_by_score(
    preds: list[dict], with_objects: list[int], neg_preds: list[dict], lens_preds: list[dict] | None = None
) -> dict[str, dict]:
    """The rates at a ladder of scores, to choose a deployment threshold from one run; with
    `lens_preds` (every class's detections) also the images with no box of any class."""
    out = {}
    for t in SCORE_LADDER:
        out[f"{t:g}"] = {
            "no_detection_rate": _share_missed(preds, with_objects, t),
            "negatives_with_detection_rate": _share_fired(neg_preds, t),
        }
        if lens_preds is not None:
            out[f"{t:g}"]["lens_no_detection_rate"] = _share_missed(lens_preds, with_objects, t)
    return out


def _share_fired(preds: list[dict], score: float) -> float | None:
    """The share of `preds` (object-free images) with a detection at `score`; None for none."""
    if not preds:
        return None
    return sum(1 for p in preds if (p["scores"] >= score).any()) / len(preds)


def _share_missed(preds: list[dict], with_objects: list[int], score: float, empty: float | None = None) -> float | None:
    """The share of the images `with_objects` (indices into `preds`) with no detection at `score`;
    `empty` when there are none."""
    if not with_objects:
        return empty
    return sum(1 for i in with_objects if not (preds[i]["scores"] >= score).any()) / len(with_objects)


def _matched(sample: Sample, pred: dict, classes: list[str], score: float, iou: float) -> tuple[np.ndarray, int]:
    """(which of the sample's objects a detection at `score` finds, false alarms): a detection
    finds an object of its class at IoU >= iou, one object each, best score first; detections on
    ignored objects count as neither."""
    keep = pred["scores"] >= score
    boxes, labels = pred["boxes"][keep], pred["labels"][keep]
    names = [c.lower() for c in classes]
    gt_ids = np.array([names.index(lab.lower()) + 1 if lab.lower() in names else 0 for lab in sample.labels])
    found = np.zeros(len(sample.boxes), bool)
    if len(boxes) == 0:
        return found, 0
    overlap = box_iou(torch.as_tensor(boxes), torch.as_tensor(sample.boxes)).numpy()
    overlap = np.where(labels[:, None] == gt_ids[None, :], overlap, 0.0)
    match = greedy_match(overlap, np.argsort(-pred["scores"][keep]), ~sample.ignore, iou)
    found[match[match >= 0]] = True
    return found, int((match < 0).sum())


def image_outcome(sample: Sample, pred: dict, classes: list[str], score: float, iou: float = 0.5) -> tuple[int, int]:
    """(objects missed, false alarms) on one image at `score` (see _matched)."""
    found, false = _matched(sample, pred, classes, score, iou)
    return int((~sample.ignore & ~found).sum()), false


SIZE_EDGES = (16, 32, 64, 128)  # object sizes (sqrt of area, px as the model reads them) for recall


def recall_by_size(
    samples: list[Sample], preds: list[dict], classes: list[str], score: float, scale: Callable[[Sample], float]
) -> dict[str, dict]:
    """Share of care objects found at `score` (a detection of their class at IoU >= 0.5) by size:
    sqrt(area) times `scale` (the resize the model applies to that image), so a band means the
    same pixels to the model whatever the photo's resolution. Where the misses are."""
    found, sizes = [], []
    for s, p in zip(samples, preds, strict=True):
        hit, _ = _matched(s, p, classes, score, 0.5)
        care = ~s.ignore
        found.append(hit[care])
        sizes.append(box_side(s) * scale(s))
    found_all = np.concatenate(found) if found else np.zeros(0, bool)
    size_all = np.concatenate(sizes) if sizes else np.zeros(0)
    out = {}
    for name, band in size_bands(size_all, SIZE_EDGES):
        n = int(band.sum())
        out[name] = {"objects": n, "recall": float(found_all[band].mean()) if n else None}
    return out


def model_scale(detector: Detector | RecordedPredictions) -> Callable[[Sample], float]:
    """The factor a detector resizes each image by (1 for recorded detections: their pixels)."""
    config = getattr(detector, "config", None)
    if config is None:
        return lambda s: 1.0
    size = test_sizes(config.model)
    return lambda s: scale_of(size, s.height, s.width)


def failures(samples: list[Sample], preds: list[dict], classes: list[str], score: float) -> list[dict]:
    """Images with a missed object or a false alarm at `score`, worst first: where to look."""
    rows = []
    for s, p in zip(samples, preds, strict=True):
        missed, false = image_outcome(s, p, classes, score)
        if missed or false:
            rows.append(
                {"file": str(s.path), "objects": int((~s.ignore).sum()), "missed": missed, "false_alarms": false}
            )
    return sorted(rows, key=lambda r: (-r["missed"], -r["false_alarms"], r["file"]))


def plot_pr_curves(aps: dict[str, APResult], path: Path) -> None:
    """Precision-recall curve per class, AP in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, r in aps.items():
        ax.plot(r.recall, r.precision, label=f"{name} AP50={r.ap:.3f}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
