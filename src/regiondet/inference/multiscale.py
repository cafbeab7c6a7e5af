"""Multi-scale testing: one image read at several sizes, the detections merged.

One size suits some objects and not others (a text model read at 900 px finds more words of
8-16 px than at 720 and fewer large ones); reading at both and keeping the better-scoring of
overlapping detections can get both, at the sum of the times. detectron2's
GeneralizedRCNNWithTTA and MMOCR's MultiScaleFlipAug do the same.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torchvision.ops import batched_nms

from regiondet.models.sizes import SizeTransform, test_sizes


def sizes_at(cfg, sides: list[int]) -> list[tuple[int, int]]:
    """(shorter side, longer-side cap) for each of `sides`, the cap in the proportion of the
    model's test sizes."""
    base_min, base_max = test_sizes(cfg)
    return [(int(s), round(base_max * int(s) / base_min)) for s in sides]


def scale_sizes(cfg) -> list[tuple[int, int]]:
    """(shorter side, longer-side cap) for each reading of an image: the model's test size, then
    each of `test_scales` with the cap scaled in proportion."""
    base_min, base_max = test_sizes(cfg)
    return [(base_min, base_max), *sizes_at(cfg, [s for s in cfg.test_scales if int(s) != base_min])]


@contextmanager
def reading_at(model: torch.nn.Module, min_size: int, max_size: int) -> Iterator[None]:
    """The model's transform (an OnnxModel: its resize) set to read images at this size,
    restored afterwards."""
    if not hasattr(model, "transform"):  # OnnxModel resizes before its graph
        saved_sizes = model.test_sizes
        model.test_sizes = (min_size, max_size)
        try:
            yield
        finally:
            model.test_sizes = saved_sizes
        return
    t = model.transform
    if isinstance(t, SizeTransform):
        saved = t.test_min_size, t.test_max_size
        t.test_min_size, t.test_max_size = min_size, max_size
    else:
        saved = t.min_size, t.max_size
        t.min_size, t.max_size = (min_size,), max_size
    try:
        yield
    finally:
        if isinstance(t, SizeTransform):
            t.test_min_size, t.test_max_size = saved
        else:
            t.min_size, t.max_size = saved


def merge_outputs(outputs: list[dict[str, Tensor]], nms_thresh: float, limit: int) -> dict[str, Tensor]:
    """The detections of every reading in one list by descending score. Boxes overlapping a
    better one of their class by more than nms_thresh go, and at most `limit` stay; text outlines
    are all kept for the predictor's polygon NMS, which compares outlines rather than boxes."""
    if len(outputs) == 1:
        return outputs[0]
    out = {k: torch.cat([o[k] for o in outputs]) for k in outputs[0]}
    if "keypoints" in out:
        keep = out["scores"].argsort(descending=True)
    else:
        keep = batched_nms(out["boxes"], out["scores"], out["labels"], nms_thresh)[:limit]
    return {k: v[keep] for k, v in out.items()}


def run_scales(model: torch.nn.Module, x: Tensor, cfg) -> dict[str, Tensor]:
    """The model's output for one image, read at each of its test sizes and merged."""
    sizes = scale_sizes(cfg)
    if len(sizes) == 1:
        return model([x])[0]
    outputs = []
    for min_size, max_size in sizes:
        with reading_at(model, min_size, max_size):
            outputs.append(model([x])[0])
    return merge_outputs(outputs, cfg.box_nms_thresh, cfg.box_detections_per_img)
