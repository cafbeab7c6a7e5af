"""Where inference time goes: whole-model latency per variant and per stage, on real images.

Latency targets are met or missed by the model's largest stage, so the benchmark prints both:
the median/p90 of a full forward (batch 1, resized inside the model as in deployment) for
the model as shipped (batch norms folded) and unfolded, and the median time of each stage.
Timings depend on what else runs on the machine: measure on an idle CPU.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

# Stages of a torchvision GeneralizedRCNN, by attribute path; absent ones are skipped.
STAGES = ("transform", "backbone.body", "backbone.fpn", "backbone", "rpn", "roi_heads")


def _module(model: torch.nn.Module, path: str) -> torch.nn.Module | None:
    for part in path.split("."):
        model = getattr(model, part, None)
        if model is None:
            return None
    return model


def load_images(paths: list[Path], size: int | None) -> list[torch.Tensor]:
    """RGB tensors in [0, 1], resized to size x size when size is given."""
    from regiondet.data.images import load_upright
    from regiondet.inference.predictor import to_tensor

    out = []
    for p in paths:
        image = load_upright(p)
        if size:
            image = image.resize((size, size), Image.BILINEAR)
        out.append(to_tensor(image))
    return out


@torch.inference_mode()
def time_model(model: torch.nn.Module, images: list[torch.Tensor], runs: int, warmup: int = 2) -> dict:
    """Median and p90 ms of a full forward and the median ms of each stage, over `runs` passes."""
    model.eval()
    stage_ms: dict[str, list[float]] = defaultdict(list)
    starts: dict[str, float] = {}
    handles = []
    for name in STAGES:
        m = _module(model, name)
        if m is None or (name == "backbone" and _module(model, "backbone.body") is not None):
            continue  # a backbone with body/fpn is timed by its parts
        handles.append(m.register_forward_pre_hook(lambda _m, _x, n=name: starts.__setitem__(n, time.perf_counter())))
        handles.append(
            m.register_forward_hook(
                lambda _m, _x, _y, n=name: stage_ms[n].append(1000 * (time.perf_counter() - starts[n]))
            )
        )
    try:
        for x in images[:warmup]:
            model([x])
        stage_ms.clear()
        total = []
        for i in range(runs):
            x = images[i % len(images)]
            t0 = time.perf_counter()
            model([x])
            total.append(1000 * (time.perf_counter() - t0))
    finally:
        for h in handles:
            h.remove()
    return {
        "ms_median": float(np.median(total)),
        "ms_p90": float(np.percentile(total, 90)),
        "stages_ms_median": {k: float(np.median(v)) for k, v in stage_ms.items()},
    }


def speed_benchmark(model: str | Path, images: list[torch.Tensor], runs: int) -> dict:
    """The shipped (folded) model against the same weights unfolded."""
    from regiondet.inference.predictor import Detector

    folded = time_model(Detector.load(model).model, images, runs)
    unfolded = time_model(Detector.load(model, fold=False).model, images, runs)
    return {
        "folded": folded,
        "unfolded": unfolded,
        "speedup_from_folding": unfolded["ms_median"] / folded["ms_median"],
        "threads": torch.get_num_threads(),
        "runs": runs,
    }


def format_speed(res: dict) -> str:
    lines = ["| variant | median ms | p90 ms |", "|---|---|---|"]
    for name in ("folded", "unfolded"):
        lines.append(f"| {name} | {res[name]['ms_median']:.1f} | {res[name]['ms_p90']:.1f} |")
    lines += ["", f"folding batch norms: {res['speedup_from_folding']:.2f}x faster ({res['threads']} threads)", ""]
    total = sum(res["folded"]["stages_ms_median"].values())
    lines += ["| stage (folded) | median ms | share |", "|---|---|---|"]
    for name, ms in res["folded"]["stages_ms_median"].items():
        lines.append(f"| {name} | {ms:.1f} | {100 * ms / total:.0f} % |")
    return "\n".join(lines)
