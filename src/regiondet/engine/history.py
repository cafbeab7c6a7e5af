"""The per-epoch log of a run: a CSV of the thesis's curves and PNG plots of them."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from regiondet.io import atomic_write_text

COLUMNS = [
    "epoch",
    "steps",
    "loss_objectness",
    "loss_rpn_box_reg",
    "loss_classifier",
    "loss_box_reg",
    "loss_points",
    "loss_stop",
    "loss_total",
    "rpn_overlapping_proposals",
    "head_accuracy",
    "lr",
    "seconds",
    "val_map50",
    "val_coco_ap",
    "val_no_detection_rate",
    "val_negatives_with_detection_rate",
    "val_hmean",
    "val_precision",
    "val_recall",
]
# Columns only the text task fills (and, conversely, the box task's val figures stay blank for text).
TEXT_ONLY = {"loss_points", "loss_stop", "val_hmean", "val_precision", "val_recall"}
PLOTS = [
    ("loss_objectness", "RPN objectness loss"),
    ("loss_rpn_box_reg", "RPN box loss"),
    ("loss_classifier", "head class loss"),
    ("loss_box_reg", "head box loss"),
    ("loss_total", "total loss"),
    ("rpn_overlapping_proposals", "RPN proposals on objects (IoU>=0.5)"),
    ("head_accuracy", "head accuracy"),
    ("seconds", "seconds per epoch"),
    ("val_map50", "validation mAP50"),
    ("loss_points", "point-pair loss"),
    ("loss_stop", "stop/continue loss"),
    ("val_hmean", "validation H-mean"),
]


def write_history(rows: list[dict], out_dir: Path) -> None:
    """Rewrite metrics.csv and curves.png from all rows so far (atomic, so resume-safe)."""
    buf = io.StringIO()
    per_class = list(dict.fromkeys(k for r in rows for k in r if k.startswith("val_ap50_")))  # several classes
    columns = COLUMNS + per_class
    writer = csv.DictWriter(buf, columns, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    atomic_write_text(out_dir / "metrics.csv", buf.getvalue())
    plot_history(rows, out_dir / "curves.png")


def read_history(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in csv.DictReader(f)]


def plot_history(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 3
    shown = [(k, t) for k, t in PLOTS if any(r.get(k) is not None for r in rows)] or PLOTS[:1]
    fig, axes = plt.subplots(
        math.ceil(len(shown) / cols), cols, figsize=(12, 3 * math.ceil(len(shown) / cols)), squeeze=False
    )
    for ax in axes.flat[len(shown) :]:
        ax.set_visible(False)
    for ax, (key, title) in zip(axes.flat, shown, strict=False):
        pts = [(r["epoch"], r[key]) for r in rows if r.get(key) is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", ms=3)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
