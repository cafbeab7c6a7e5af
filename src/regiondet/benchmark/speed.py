"""Where inference time goes: whole-model latency per variant and per stage, on real images.

Latency targets are met or missed by the model's largest stage, so the benchmark prints both:
the median/p90 of a full forward (batch 1, resized inside the model as in deployment) for
the model as loaded (batch norms folded, channels-last weights) and without each speed-up,
and the median time of each stage.
Timings depend on what else runs on the machine: measure on an idle CPU.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from regiondet.data.images import load_upright
from regiondet.errors import UserError
from regiondet.inference.faces import FaceBlur
from regiondet.inference.multiscale import run_scales
from regiondet.inference.onnx_model import onnx_available, onnxruntime_available
from regiondet.inference.predictor import Detector, to_tensor
from regiondet.models.zoo import resolve_model_path, shipped_onnx

# Stages of a torchvision GeneralizedRCNN, by attribute path; absent ones are skipped.
STAGES = ("transform", "backbone.body", "backbone.fpn", "backbone", "rpn", "roi_heads")


LIVE_FLOOR = 0.1  # the lowest score a video's tracker uses (AlertTracker.low)


def _module(model: torch.nn.Module, path: str) -> torch.nn.Module | None:
    for part in path.split("."):
        model = getattr(model, part, None)
        if model is None:
            return None
    return model


def parse_size(text: str) -> tuple[int, int] | None:
    """`--size`: "416" (416 x 416), "640x480" (a webcam frame, width x height), "0" (keep)."""
    w, sep, h = str(text).lower().partition("x")
    if not (w.isdigit() and (not sep or h.isdigit())):
        raise UserError(f"--size takes N or WxH, e.g. 416 or 640x480 (got '{text}')")
    size = (int(w), int(h) if sep else int(w))
    return None if size == (0, 0) else size


def load_images(paths: list[Path], size: tuple[int, int] | None) -> list[torch.Tensor]:
    """RGB tensors in [0, 1], resized to `size` (width, height) when given."""
    out = []
    for p in paths:
        image = load_upright(p)
        if size:
            image = image.resize(size, Image.BILINEAR)
        out.append(to_tensor(image))
    return out


@torch.inference_mode()
def time_model(model: torch.nn.Module, images: list[torch.Tensor], runs: int, warmup: int = 2, cfg=None) -> dict:
    """Median and p90 ms of a full forward and the median ms of each stage, over `runs` passes.
    With a ModelConfig, a forward reads the image as a live frame: at each of its test sizes
    (`test_scales`) where the model reads frames so (`test_scales_live`), else at its own."""

    def forward(x: torch.Tensor) -> None:
        run_scales(model, x, cfg, live=True) if cfg else model([x])

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
            forward(x)
        stage_ms.clear()
        total = []
        for i in range(runs):
            x = images[i % len(images)]
            t0 = time.perf_counter()
            forward(x)
            total.append(1000 * (time.perf_counter() - t0))
    finally:
        for h in handles:
            h.remove()
    return {
        "ms_median": float(np.median(total)),
        "ms_p90": float(np.percentile(total, 90)),
        "stages_ms_median": {k: float(np.median(v)) for k, v in stage_ms.items()},
    }


VARIANTS = {  # name -> Detector.load flags; the first is the model as shipped
    "as loaded": {},
    "no channels-last": {"channels_last": False},
    "plain (no folding, no channels-last)": {"fold": False, "channels_last": False},
}


def speed_benchmark(
    model: str | Path, images: list[torch.Tensor], runs: int, overrides: list[str] | None = None
) -> dict:
    """The model as loaded (batch norms folded, channels-last) against the same weights without
    each speed-up."""

    variants = {}
    for name, flags in VARIANTS.items():
        det = Detector.load(model, overrides=overrides, **flags)
        variants[name] = time_model(det.model, images, runs, cfg=det.config.model)
    first, last = (variants[n]["ms_median"] for n in (next(iter(VARIANTS)), list(VARIANTS)[-1]))
    onnx = _time_onnx(model, images, runs, overrides)
    if onnx:
        variants["ONNX Runtime (regiondet export model.onnx)"] = onnx
    verified = Detector.load(model, overrides=overrides)
    if verified.verifier is not None:  # the crop verifier runs after the graph, on each box worth a look
        variants[f"as loaded + crop verifier, boxes >= {LIVE_FLOOR}"] = time_predict(verified, images, runs)
        if onnx:
            ort = Detector.load(resolve_model_path(model), overrides=overrides, runtime="onnxruntime")
            variants[f"ONNX Runtime + crop verifier, boxes >= {LIVE_FLOOR}"] = time_predict(ort, images, runs)
    shipped = shipped_onnx(model)
    if shipped is not None and onnxruntime_available():
        det = Detector.load(shipped, overrides=overrides)
        variants[f"ONNX Runtime, shipped {shipped.name}"] = time_model(det.model, images, runs, cfg=det.config.model)
    return {"variants": variants, "speedup": last / first, "threads": torch.get_num_threads(), "runs": runs}


@torch.inference_mode()
def time_predict(det: Detector, images: list[torch.Tensor], runs: int, warmup: int = 2) -> dict:
    """Median and p90 ms of Detector.predict at the live path's floor: the model and, when it has
    one, its crop verifier on every box the tracker could use."""
    for x in images[:warmup]:
        det.predict(x, score=LIVE_FLOOR, live=True)
    total = []
    for i in range(runs):
        t0 = time.perf_counter()
        det.predict(images[i % len(images)], score=LIVE_FLOOR, live=True)
        total.append(1000 * (time.perf_counter() - t0))
    return {"ms_median": float(np.median(total)), "ms_p90": float(np.percentile(total, 90)), "stages_ms_median": {}}


@torch.inference_mode()
def time_side_by_side(models: dict[str, Detector], images: list[torch.Tensor], runs: int, warmup: int = 2) -> dict:
    """Median and p90 ms of each model, the models taking turns on each image: a CPU that runs
    faster or slower from one minute (or day) to the next slows them alike, so their ratio holds."""

    def forward(det: Detector, x: torch.Tensor) -> None:
        det.predict(x, score=LIVE_FLOOR, live=True)  # a crop verifier, when a model has one, counts too

    for det in models.values():
        det.model.eval()
        for x in images[:warmup]:
            forward(det, x)
    ms: dict[str, list[float]] = {name: [] for name in models}
    for i in range(runs):
        x = images[i % len(images)]
        for name, det in models.items():
            t0 = time.perf_counter()
            forward(det, x)
            ms[name].append(1000 * (time.perf_counter() - t0))
    first = float(np.median(next(iter(ms.values()))))
    return {
        name: {
            "ms_median": float(np.median(v)),
            "ms_p90": float(np.percentile(v, 90)),
            "relative": float(np.median(v)) / first,
        }
        for name, v in ms.items()
    }


def baseline_benchmark(
    model: str | Path, baselines: list[str], images: list[torch.Tensor], runs: int, overrides: list[str] | None = None
) -> dict:
    """`model` and each of `baselines` (checkpoints or shipped names, e.g. an earlier release's
    file), each as loaded, timed side by side."""
    names = [str(model), *map(str, baselines)]
    if len(set(names)) < len(names):
        raise UserError(f"--baseline: each model once ({', '.join(names)})")
    models = {name: Detector.load(name, overrides=overrides) for name in names}
    return time_side_by_side(models, images, runs)


def time_face_blur(images: list[torch.Tensor], runs: int) -> dict:
    """Median and p90 ms to find and blur the faces of one image, as --out does for a video
    frame (one reading) and for a photo (two), taking turns."""
    blur = FaceBlur()
    pictures = [Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for x in images]
    ms = {True: [], False: []}
    for i in range(max(runs, len(pictures))):
        for video in (True, False):
            start = time.perf_counter()
            blur.blur(pictures[i % len(pictures)], video=video)
            ms[video].append(1000 * (time.perf_counter() - start))
    return {
        "detector": blur.kind,
        "ms_median": float(np.median(ms[True])),
        "ms_p90": float(np.percentile(ms[True], 90)),
        "photo_ms_median": float(np.median(ms[False])),
    }


def _time_onnx(model: str | Path, images: list[torch.Tensor], runs: int, overrides: list[str] | None) -> dict | None:
    """The same weights exported to ONNX (in memory) and run by ONNX Runtime; None when
    onnx/onnxruntime are not installed."""
    if Path(str(model)).suffix == ".onnx" or not onnx_available():
        return None
    # by path: a shipped name would load the model's own ONNX file instead of exporting it
    onnx = Detector.load(resolve_model_path(model), overrides=overrides, runtime="onnxruntime")
    return time_model(onnx.model, images, runs, cfg=onnx.config.model)


def format_speed(res: dict) -> str:
    lines = ["| variant | median ms | p90 ms | frames per second |", "|---|---|---|---|"]
    for name, r in res["variants"].items():
        lines.append(f"| {name} | {r['ms_median']:.1f} | {r['ms_p90']:.1f} | {1000 / r['ms_median']:.1f} |")
    lines += ["", f"as loaded: {res['speedup']:.2f}x faster than plain ({res['threads']} threads)", ""]
    if "face_blur" in res:
        f = res["face_blur"]
        lines += [
            f"face blur ({f['detector']}), what --out adds: {f['ms_median']:.1f} ms median per video frame, "
            f"{f['photo_ms_median']:.1f} ms per photo (read at three scales)",
            "",
        ]
    if "side_by_side" in res:
        lines += ["| model, as loaded, taking turns per image | median ms | p90 ms | x first |", "|---|---|---|---|"]
        for name, r in res["side_by_side"].items():
            lines.append(f"| {name} | {r['ms_median']:.1f} | {r['ms_p90']:.1f} | {r['relative']:.2f} |")
        lines.append("")
    stages = next(iter(res["variants"].values()))["stages_ms_median"]
    total = sum(stages.values())
    lines += ["| stage (as loaded) | median ms | share |", "|---|---|---|"]
    for name, ms in stages.items():
        lines.append(f"| {name} | {ms:.1f} | {100 * ms / total:.0f} % |")
    return "\n".join(lines)
