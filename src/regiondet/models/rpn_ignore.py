"""A torchvision RPN that leaves do-not-care regions out of its objectness loss.

Ground-truth rows with label -1 (ICDAR's '###', MSRA-TD500's difficult lines) are neither
text nor background: an anchor that would be background but overlaps one of them by at
least the background threshold is discarded (label -1) instead of taught "not text", and
no anchor learns to propose them as text. Rows with label >= 1 are matched as usual.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection.rpn import RegionProposalNetwork


class IgnoreAwareRPN(RegionProposalNetwork):
    """RegionProposalNetwork whose anchor labels respect ground-truth rows with label -1."""

    def assign_targets_to_anchors(
        self, anchors: list[Tensor], targets: list[dict[str, Tensor]]
    ) -> tuple[list[Tensor], list[Tensor]]:
        care_targets, ignored = [], []
        for t in targets:
            care = t["labels"] >= 1 if "labels" in t else torch.ones(len(t["boxes"]), dtype=torch.bool)
            care_targets.append({"boxes": t["boxes"][care]})
            ignored.append(t["boxes"][~care])
        labels, matched = super().assign_targets_to_anchors(anchors, care_targets)
        low = self.proposal_matcher.low_threshold
        for lab, anchors_per_image, ign in zip(labels, anchors, ignored, strict=True):
            if len(ign):
                near = self.box_similarity(ign, anchors_per_image).amax(0) >= low
                lab[near & (lab == 0)] = -1.0
        return labels, matched
