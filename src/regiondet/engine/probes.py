"""Read the thesis's training curves out of torchvision's Faster R-CNN without changing it.

Two figures the losses do not show: how many RPN proposals overlap a ground-truth box
(IoU >= 0.5) and how often the head classifies its sampled RoIs right.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops import box_iou


class TrainProbes:
    """Forward hooks on the RPN and the box predictor; call `pop()` after each step."""

    def __init__(self, model: nn.Module):
        self.overlap_sum, self.overlap_images = 0.0, 0
        self.correct = 0
        self.total = 0
        self._labels: torch.Tensor | None = None
        roi_heads = model.roi_heads
        original = roi_heads.select_training_samples

        def select_training_samples(proposals, targets):
            out = original(proposals, targets)
            self._labels = torch.cat(out[2]) if out[2] else None
            return out

        roi_heads.select_training_samples = select_training_samples
        self._handles = [
            model.rpn.register_forward_hook(self._on_rpn),
            roi_heads.box_predictor.register_forward_hook(self._on_predictor),
        ]

    def _on_rpn(self, module, args, output) -> None:
        targets = args[2] if len(args) > 2 else None
        if not module.training or targets is None:
            return
        for boxes, t in zip(output[0], targets, strict=True):
            care = t["boxes"][t["labels"] >= 1] if "labels" in t else t["boxes"]
            if len(care):
                hit = (box_iou(boxes.detach(), care) >= 0.5).any(dim=1)
                self.overlap_sum += float(hit.sum())
                self.overlap_images += 1

    def _on_predictor(self, module, args, output) -> None:
        if not module.training or self._labels is None:
            return
        pred = output[0].detach().argmax(dim=1)
        self.correct += int((pred == self._labels).sum())
        self.total += len(self._labels)
        self._labels = None

    def summary(self) -> dict[str, float]:
        """Mean overlapping proposals per image with objects, head accuracy; then reset."""
        out = {
            "rpn_overlapping_proposals": self.overlap_sum / self.overlap_images if self.overlap_images else 0.0,
            "head_accuracy": self.correct / self.total if self.total else 0.0,
        }
        self.load({})
        return out

    def state(self) -> dict[str, float]:
        """The epoch's counts so far, for a checkpoint: a resumed epoch reports all its steps."""
        return {
            "overlap_sum": self.overlap_sum,
            "overlap_images": self.overlap_images,
            "correct": self.correct,
            "total": self.total,
        }

    def load(self, state: dict[str, float]) -> None:
        self.overlap_sum = float(state.get("overlap_sum", 0.0))
        self.overlap_images = int(state.get("overlap_images", 0))
        self.correct, self.total = int(state.get("correct", 0)), int(state.get("total", 0))
