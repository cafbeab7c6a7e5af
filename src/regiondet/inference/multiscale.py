"""Multi-scale testing: one image read at several sizes, the detections merged.

One size suits some objects and not others (a text model read at 900 px finds more words of
8-16 px than at 720 and fewer large ones); reading at both and keeping the better-scoring of
overlapping detections can get both, at the sum of the times. detectron2's
GeneralizedRCNNWithTTA and MMOCR's MultiScaleFlipAug do the same. With `test_scales_focus`
the extra readings read only crops around the first reading's small detections (SAHI-style
slicing, but guided): small words take a small part of a scene, so most of the second reading's
time went on pixels that gave nothing new.

With `test_flip` a box model also reads the image mirrored (Ultralytics' `augment`, detectron2's
TTA flip) and the two readings are averaged: an object seen in both keeps the mean of its boxes
and scores, one seen in a single reading half its score (the mean with the 0 of the other). A
look-alike that fires in one view only falls, a lens seen both ways keeps its score.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor
from torchvision.ops import batched_nms, box_iou

from regiondet.models.sizes import SizeTransform, scale_of, test_sizes

# pixels of the first reading read around a small detection too: the context its features need
FOCUS_MARGIN = 32
# a crop's detection within this many pixels of an edge cut from the image is a cut-off word
CUT_EDGE = 2
# a box of the mirrored reading overlapping one of the same class by this IoU is the same object
FLIP_SAME_IOU = 0.55


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


def focus_regions(boxes: Tensor, below: float, margin: float, height: int, width: int) -> list[tuple[int, ...]]:
    """Rectangles (x0, y0, x1, y1) of the image around the boxes whose shorter side is below
    `below`, grown by `margin` and joined while any two overlap."""
    small = boxes[(boxes[:, 2:] - boxes[:, :2]).min(1).values < below].tolist()
    rects = [
        [max(0, math.floor(x0 - margin)), max(0, math.floor(y0 - margin)),
         min(width, math.ceil(x1 + margin)), min(height, math.ceil(y1 + margin))]
        for x0, y0, x1, y1 in small
    ]  # fmt: skip
    joined = True
    while joined:
        joined, out = False, []
        for r in rects:
            for o in out:
                if r[0] < o[2] and o[0] < r[2] and r[1] < o[3] and o[1] < r[3]:
                    o[:] = [min(o[0], r[0]), min(o[1], r[1]), max(o[2], r[2]), max(o[3], r[3])]
                    joined = True
                    break
            else:
                out.append(r)
        rects = out
    return [tuple(r) for r in rects if r[2] > r[0] and r[3] > r[1]]


def read_crop(model: torch.nn.Module, x: Tensor, rect: tuple[int, ...], scale: float) -> dict[str, Tensor]:
    """The detections in one crop of x read at `scale`, in x's pixels, without those cut by an
    edge the crop made (the whole-image reading sees those words whole)."""
    x0, y0, x1, y1 = rect
    h, w = x.shape[-2:]
    ch, cw = y1 - y0, x1 - x0
    with reading_at(model, round(scale * min(ch, cw)), math.ceil(scale * max(ch, cw)) + 1):
        out = model([x[:, y0:y1, x0:x1]])[0]
    b = out["boxes"]
    cut = (
        (b[:, 0] <= CUT_EDGE) & (x0 > 0)
        | (b[:, 1] <= CUT_EDGE) & (y0 > 0)
        | (b[:, 2] >= cw - CUT_EDGE) & (x1 < w)
        | (b[:, 3] >= ch - CUT_EDGE) & (y1 < h)
    )
    out = {k: v[~cut] for k, v in out.items()}
    out["boxes"] = out["boxes"] + torch.tensor([x0, y0, x0, y0], dtype=out["boxes"].dtype)
    if "keypoints" in out:
        kp = out["keypoints"].clone()
        kp[..., 0] += x0
        kp[..., 1] += y0
        out["keypoints"] = kp
    return out


def run_scales(model: torch.nn.Module, x: Tensor, cfg, flip: bool = False, live: bool = False) -> dict[str, Tensor]:
    """The model's output for one image, read at each of its test sizes and merged (with
    test_scales_focus, the extra sizes read only around the first reading's small detections;
    a `live` frame at the first size only unless test_scales_live); with `flip` (the model's
    test_flip, for a still), read mirrored too and the two averaged."""
    sizes = scale_sizes(cfg)[: 1 if live and not cfg.test_scales_live else None]
    out = _run_sizes(model, x, cfg, sizes)
    if not flip:
        return out
    mirrored = _run_sizes(model, x.flip(-1), cfg, sizes)
    boxes = mirrored["boxes"].clone()
    boxes[:, 0], boxes[:, 2] = x.shape[-1] - mirrored["boxes"][:, 2], x.shape[-1] - mirrored["boxes"][:, 0]
    return averaged(out, {**mirrored, "boxes": boxes})


def averaged(a: dict[str, Tensor], b: dict[str, Tensor]) -> dict[str, Tensor]:
    """Two readings of one image as one, best score first: each box of `a` (best first) paired
    with the best-overlapping unpaired box of its class in `b` (IoU >= FLIP_SAME_IOU) takes the
    mean box and mean score; a box left unpaired in either keeps its box at half its score."""
    iou = box_iou(a["boxes"], b["boxes"]) * (a["labels"][:, None] == b["labels"][None, :])
    paired_a = torch.full((len(a["scores"]),), -1, dtype=torch.int64)
    free = torch.ones(len(b["scores"]), dtype=torch.bool)
    for i in torch.argsort(a["scores"], descending=True).tolist():
        if not free.any():
            break
        row = torch.where(free, iou[i], torch.zeros_like(iou[i]))
        j = int(row.argmax())
        if row[j] >= FLIP_SAME_IOU:
            paired_a[i], free[j] = j, False
    both = paired_a >= 0
    boxes, scores = a["boxes"].clone(), a["scores"] / 2
    boxes[both] = (a["boxes"][both] + b["boxes"][paired_a[both]]) / 2
    scores[both] = scores[both] + b["scores"][paired_a[both]] / 2
    out = {
        "boxes": torch.cat([boxes, b["boxes"][free]]),
        "scores": torch.cat([scores, b["scores"][free] / 2]),
        "labels": torch.cat([a["labels"], b["labels"][free]]),
    }
    order = torch.argsort(out["scores"], descending=True)
    return {k: v[order] for k, v in out.items()}


def _run_sizes(model: torch.nn.Module, x: Tensor, cfg, sizes: list[tuple[int, int]]) -> dict[str, Tensor]:
    """The model's output for one image read at each of `sizes`, merged."""
    if len(sizes) == 1:
        return model([x])[0]
    outputs = []
    with reading_at(model, *sizes[0]):
        outputs.append(model([x])[0])
    h, w = x.shape[-2:]
    first = scale_of(sizes[0], h, w)
    focus = cfg.test_scales_focus
    rects = focus_regions(outputs[0]["boxes"], focus / first, FOCUS_MARGIN / first, h, w) if focus else []
    for size in sizes[1:]:
        if focus:
            outputs.extend(read_crop(model, x, r, scale_of(size, h, w)) for r in rects)
            continue
        with reading_at(model, *size):
            outputs.append(model([x])[0])
    return merge_outputs(outputs, cfg.box_nms_thresh, cfg.box_detections_per_img)
