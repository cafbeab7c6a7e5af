"""regiondet's box model next to a peer a user could pick instead: each set scored on its own,
by the same evaluator, in one table."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from regiondet.benchmark.box_peers import load_box_peer
from regiondet.data.dataset import load_negatives
from regiondet.data.spec import parse_spec
from regiondet.evaluation.confusion import BACKGROUND
from regiondet.evaluation.detection import evaluate, evaluate_negatives
from regiondet.evaluation.scoring import load_eval_sets
from regiondet.inference.predictor import Detector


def run_box_benchmark(
    model: str,
    peers: list[str],
    data: list[str],
    class_map: dict[str, str | None],
    negatives: list[str] | None = None,
    score: float | None = None,
    threads: int | None = None,
    progress: bool = True,
    on_row: Callable[[list[dict]], None] | None = None,
) -> list[dict]:
    """One row per (method, set): regiondet's model first, then each peer, each set in turn;
    the negatives (object-free images) as one more row per method."""
    det = Detector.load(model, score)
    sets = [(spec, load_eval_sets(det, [spec], None, class_map)[0]) for spec in data]
    negs = load_negatives(negatives or [])
    methods = [(f"regiondet ({model})", det)]
    methods += [(name, load_box_peer(name, det.classes, det.score, threads)) for name in peers]
    rows: list[dict] = []
    for method, detector in methods:
        for spec, samples in sets:
            res = evaluate(detector, samples, None, detector.score, progress=progress)
            res.pop("failures", None)
            rows.append({"method": method, "data": _short(spec), **res})
            if on_row:
                on_row(rows)
        if negs:
            res = evaluate_negatives(detector, negs, detector.score, progress)
            ms = 1000 * np.array(res.pop("seconds"))
            del res["predictions"]
            data = "negatives: " + ", ".join(map(_short, negatives or []))
            rows.append({"method": method, "data": data, **res, "latency_ms_median": float(np.median(ms))})
            if on_row:
                on_row(rows)
    return rows


def _short(spec: str) -> str:
    """A SPEC as a table cell: its path from the data folder on, and its split."""
    s = parse_spec(spec)
    tail = "/".join(s.path.replace("\\", "/").split("/")[-2:])
    return tail + (f":{s.extra}" if s.extra else "")


def format_box_table(rows: list[dict]) -> str:
    """A Markdown table: method, set, images, each class's AP50, lens AP50 (classes as one),
    objects boxed as another class at the score (the confusion matrix off its diagonal), images
    with an object but no box of its class, and with no box of any class (no lens box: no
    alert), object-free images with a box, ms/image."""
    classes = sorted({c for r in rows for c in r.get("ap50_per_class", {})})
    head = " | ".join(f"{c} AP50" for c in classes)
    lines = [
        f"| method | data | images | {head} | lens AP50 | boxed as another class | no box | no lens box "
        "| negatives with a box | ms (median) |",
        "|---|---|---:|" + "---:|" * (len(classes) + 1) + "---|" + "---:|" * 4,
    ]

    def cell(v) -> str:
        return "-" if v is None or v != v else f"{v:.3f}"

    for r in rows:
        negative = "ap50_per_class" not in r
        aps = " | ".join("-" if negative else cell(r["ap50_per_class"].get(c)) for c in classes)
        lines.append(
            f"| {r['method']} | {r['data']} | {r['negatives'] if negative else r['images']} | {aps} "
            f"| {'-' if negative else cell(r.get('lens_ap50'))} | {'-' if negative else confused(r.get('confusion'))} "
            f"| {'-' if negative else cell(r['no_detection_rate'])} "
            f"| {'-' if negative else cell(r.get('lens_no_detection_rate'))} "
            f"| {cell(r['negatives_with_detection_rate'])} | {r['latency_ms_median']:.0f} |"
        )
    return "\n".join(lines)


def confused(counts: dict[str, dict[str, int]] | None) -> str:
    """The off-diagonal of a confusion matrix as a table cell: "7 camera as phone", "0" when no
    object was boxed as another class, "-" without a matrix."""
    if not counts:
        return "-"
    pairs = [
        f"{n} {true} as {said}"
        for true, row in counts.items()
        if true != BACKGROUND
        for said, n in row.items()
        if n and said not in (true, BACKGROUND)
    ]
    return ", ".join(pairs) or "0"
