"""regiondet's text model next to the offline peers: same images, same evaluator, one table."""

from __future__ import annotations

from collections.abc import Callable

from regiondet.benchmark.text_peers import load_peer
from regiondet.data.sample import Sample
from regiondet.errors import UserError
from regiondet.evaluation.text_detection import evaluate_polygons, evaluate_text
from regiondet.inference.predictor import Detector, default_runtime


def run_text_benchmark(
    models: list[str],
    peers: list[str],
    samples: list[Sample],
    score: float | None = None,
    threads: int | None = None,
    progress: bool = True,
    on_row: Callable[[list[dict]], None] | None = None,
    runtime: str | None = None,
) -> list[dict]:
    """One result row per method (regiondet's models first, then each peer, in the order given).
    Each model runs as `regiondet detect` runs it unless `runtime` says otherwise.

    on_row gets the rows so far after each method, so a long run keeps what it measured.
    """
    rows: list[dict] = []

    def add(row: dict) -> None:
        rows.append(row)
        if on_row:
            on_row(rows)

    for model in models:
        det = Detector.load(model, score, runtime=runtime or default_runtime(model, videos=False))
        if det.config.model.task != "text":
            raise UserError(f"{model}: a box model; the text benchmark needs a text model (model.task: text)")
        method = f"regiondet {model} ({det.runtime})"
        add({"method": method, "runtime": det.runtime, **evaluate_text(det, samples, score, progress, desc=model)})
    for name in peers:
        detect = load_peer(name, threads)
        add({"method": name, **evaluate_polygons(detect, samples, progress, desc=name)})
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table: method, images, P, R, H-mean, the matches' mean IoU, H-mean at IoU 0.7,
    the share of words a regiondet Text-RPN proposed at IoU 0.7 (peers have no proposals: -),
    ms/image (median and p90)."""
    lines = [
        "| method | images | precision | recall | H-mean | mean IoU | H-mean @IoU 0.7 "
        "| proposals @IoU 0.7 | ms/image (median) | ms/image (p90) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    for r in rows:
        strict = r.get("by_iou", {}).get("0.7", {}).get("hmean")
        proposed = r.get("proposal_recall", {}).get("0.7")
        lines.append(
            f"| {r['method']} | {r['images']} | {r['precision']:.3f} | {r['recall']:.3f} | {r['hmean']:.3f} "
            f"| {cell(r.get('mean_iou'))} | {cell(strict)} | {cell(proposed)} "
            f"| {r['latency_ms_median']:.0f} | {r['latency_ms_p90']:.0f} |"
        )
    return "\n".join(lines)
