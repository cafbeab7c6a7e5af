"""The report's figure: every cell's training loss and validation mAP50 per epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_curves(cells: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for c in cells:
        h = c["history"]
        ep = [r["epoch"] for r in h]
        axes[0].plot(ep, [r["loss_total"] for r in h], label=c["cell"])
        axes[1].plot(ep, [r["head_accuracy"] for r in h])
        axes[2].plot(ep, [r["val_map50"] if r["val_map50"] is not None else np.nan for r in h])
    for ax, title in zip(axes, ["total training loss", "head accuracy", "validation mAP50"], strict=True):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.legend(loc="lower center", ncol=3, fontsize=7)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
