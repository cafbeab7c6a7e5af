"""Proposal recall: did the RPN offer a box for each object, before the head scored it?

A missed object is either never proposed (anchors, RPN) or proposed and then scored low or
outlined badly (the head). The recorder keeps the proposals of every forward pass through
hooks, so an evaluation measures both from the same pass (detectron2 reports the same
"proposal recall" for its RPN).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torchvision.ops import box_iou

from regiondet.data.sample import Sample
from regiondet.evaluation.text import size_bands

IOUS = (0.5, 0.7)


class ProposalRecorder:
    """Context manager: the RPN's proposals of each forward pass of a torchvision detector, in
    the pixels of the image passed in, with that image's (width, height). Models without an
    RPN (ONNX) record nothing."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.proposals: list[tuple[np.ndarray, tuple[int, int]]] = []
        self._inputs: list[tuple[int, int]] = []
        self._handles: list = []

    def __enter__(self) -> ProposalRecorder:
        if isinstance(self.model, torch.nn.Module) and hasattr(self.model, "rpn"):
            self._handles = [
                self.model.register_forward_pre_hook(self._keep_inputs),
                self.model.rpn.register_forward_hook(self._keep_proposals),
            ]
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def per_image(self, images: int) -> list[tuple[np.ndarray, tuple[int, int]]] | None:
        """The proposals of each of `images` images, in order; an image read at several sizes
        (multi-scale testing: consecutive passes) gets the union of its readings'. None when
        nothing was recorded (ONNX) or the passes do not divide evenly among the images."""
        n = len(self.proposals)
        if images == 0 or n == 0 or n % images:
            return None
        k = n // images
        groups = [self.proposals[i : i + k] for i in range(0, n, k)]
        return [(np.concatenate([boxes for boxes, _ in g]), g[0][1]) for g in groups]

    def _keep_inputs(self, module, args) -> None:
        self._inputs = [(int(im.shape[-1]), int(im.shape[-2])) for im in args[0]]

    def _keep_proposals(self, module, args, output) -> None:
        for boxes, (h, w), (iw, ih) in zip(output[0], args[0].image_sizes, self._inputs, strict=True):
            k = torch.tensor([iw / w, ih / h, iw / w, ih / h])
            self.proposals.append(((boxes.detach().cpu().float() * k).numpy(), (iw, ih)))


def box_side(sample: Sample) -> np.ndarray:
    """sqrt(area) of the sample's care boxes: the size measure of box detection."""
    b = sample.boxes[~sample.ignore]
    return np.sqrt(np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None))


def proposal_recall(
    samples: list[Sample],
    recorded: list[tuple[np.ndarray, tuple[int, int]]],
    edges: tuple[float, ...] = (32, 96),
    size: Callable[[Sample], np.ndarray] = box_side,
    ious: tuple[float, ...] = IOUS,
) -> dict:
    """Share of care objects with a proposal at IoU >= each of `ious`, overall and by size band
    (`size` gives each care object's measure; bands split at `edges`, default COCO's 32 / 96)."""
    best, sizes, counts = [], [], []
    for s, (props, (w, h)) in zip(samples, recorded, strict=True):
        gt = s.boxes[~s.ignore]
        counts.append(len(props))
        scaled = torch.as_tensor(props) * torch.tensor([s.width / w, s.height / h] * 2, dtype=torch.float32)
        if len(gt) and len(props):
            best.append(box_iou(torch.as_tensor(gt), scaled).max(1).values.numpy())
        else:
            best.append(np.zeros(len(gt)))
        sizes.append(size(s))
    best_all = np.concatenate(best) if best else np.zeros(0)
    size_all = np.concatenate(sizes) if sizes else np.zeros(0)

    def row(m: np.ndarray) -> dict:
        n = int(m.sum())
        return {"objects": n, **{f"{t:g}": float((best_all[m] >= t).mean()) if n else None for t in ious}}

    return {
        "proposals_per_image": float(np.mean(counts)) if counts else 0.0,
        **row(np.ones(len(best_all), bool)),
        "by_size": {name: row(band) for name, band in size_bands(size_all, edges)},
    }
