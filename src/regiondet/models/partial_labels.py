"""RoI heads that learn from sources which label only some classes.

The camera photos carry unboxed phones and the phone photos unboxed cameras. Plain
cross-entropy would teach, on every such image, that a phone is background. Here a
background RoI of an image whose source does not label class c is taught "background or c"
(the marginal likelihood of the classes it may be): -log(p_bg + sum of p_c over the
unlabelled c). A RoI matched to a labelled box keeps plain cross-entropy, so nothing is lost
where the label is known. Sources that label every class see exactly torchvision's loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss


def partial_label_loss(logits: Tensor, labels: Tensor, unlabelled: Tensor) -> Tensor:
    """Mean over RoIs of -log(sum of p over the classes a RoI may be).

    logits (N, K+1), labels (N,) with 0 = background, unlabelled (N, K+1) bool: the classes
    the RoI's source does not annotate. A foreground RoI may be only its label; a background
    one may be background or any unlabelled class.
    """
    allowed = F.one_hot(labels, logits.shape[1]).bool()
    allowed |= unlabelled & (labels == 0)[:, None]
    allowed[:, 0] |= labels == 0
    kept = logits.masked_fill(~allowed, float("-inf"))
    return (torch.logsumexp(logits, 1) - torch.logsumexp(kept, 1)).mean()


class PartialLabelRoIHeads(RoIHeads):
    """torchvision's RoIHeads whose classifier loss honours targets' "unlabelled" flags."""

    def forward(self, features, proposals, image_shapes, targets=None):
        if not self.training or targets is None or not any("unlabelled" in t for t in targets):
            return super().forward(features, proposals, image_shapes, targets)
        proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        x = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(x)
        _, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
        flags = []
        for t, lab in zip(targets, labels, strict=True):
            row = t.get("unlabelled")
            if row is None:
                row = torch.zeros(class_logits.shape[1], dtype=torch.bool, device=lab.device)
            flags.append(row.to(lab.device).expand(len(lab), -1))
        loss_classifier = partial_label_loss(class_logits, torch.cat(labels), torch.cat(flags))
        return [], {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
