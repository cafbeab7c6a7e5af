"""ATRR's refinement network on torchvision's RoIHeads: text/non-text, box, and an LSTM that
emits boundary point pairs one step at a time with a stop/continue label.

Pairs are encoded relative to a reference box ((x - x1) / w, (y - y1) / h): the sampled
proposal during training, the detected box at inference (the Mask R-CNN pattern of
torchvision: the extra head learns on positive proposals and runs on final detections).
Ground truth travels in targets as "keypoints" (G, 2 * max_pairs, 2) = top_0, bottom_0,
top_1, ... padded, with "num_pairs" (G,), so torchvision's transform rescales it. Do-not-care
regions are ground-truth rows with label -1: RoIs matched to them (IoU >= 0.5) get label -1,
which torchvision's sampler leaves out of both positives and negatives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.roi_heads import RoIHeads, fastrcnn_loss


class PointPairHead(nn.Module):
    """RoI feature vector -> LSTM over steps -> per step a pair (4 numbers) and stop logits."""

    def __init__(self, in_features: int, hidden: int = 256, max_pairs: int = 7):
        super().__init__()
        self.max_pairs = max_pairs
        self.proj = nn.Linear(in_features, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 6)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, in) -> pairs (N, T, 4) as (top x, top y, bottom x, bottom y) and stop logits (N, T, 2)."""
        v = F.relu(self.proj(x))
        # one spare row, dropped after: rows run independently, and ONNX Runtime's LSTM aborts
        # the whole process on an empty batch (an image with nothing detected)
        v = torch.cat([v, v.new_zeros(1, v.shape[1])])
        h, _ = self.lstm(v.unsqueeze(1).expand(-1, self.max_pairs, -1).contiguous())
        y = self.out(h[:-1])
        return y[..., :4], y[..., 4:]


def encode_pairs(points: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """(N, T, 2, 2) absolute pairs -> (N, T, 4) relative to reference boxes (N, 4)."""
    wh = (ref[:, 2:] - ref[:, :2]).clamp(min=1.0)
    rel = (points - ref[:, None, None, :2]) / wh[:, None, None, :]
    return rel.flatten(2)


def decode_pairs(rel: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """(N, T, 4) relative -> (N, T, 2, 2) absolute pairs."""
    wh = (ref[:, 2:] - ref[:, :2]).clamp(min=1.0)
    return rel.unflatten(2, (2, 2)) * wh[:, None, None, :] + ref[:, None, None, :2]


def pair_counts(stop_logits: torch.Tensor) -> torch.Tensor:
    """Number of pairs per region: one past the first step (from the 2nd on) that says stop."""
    stop = stop_logits.softmax(-1)[..., 1] > 0.5
    stop[:, 0] = False  # a region has at least two pairs
    t = stop.shape[1]
    first = torch.where(stop.any(1), stop.float().argmax(1), torch.full_like(stop[:, 0], t - 1, dtype=torch.long))
    return first + 1


def pair_losses(rel: torch.Tensor, stop_logits: torch.Tensor, target_rel: torch.Tensor, counts: torch.Tensor):
    """Smooth-L1 on the pairs that exist, cross-entropy on stop (1 at the last pair, else 0)."""
    if rel.numel() == 0:
        zero = rel.sum() + stop_logits.sum()
        return zero, zero
    steps = torch.arange(rel.shape[1], device=rel.device)[None]
    valid = steps < counts[:, None]
    loss_points = F.smooth_l1_loss(rel[valid], target_rel[valid], beta=1 / 9, reduction="sum") / valid.sum()
    stop_target = (steps == counts[:, None] - 1).long()
    loss_stop = F.cross_entropy(stop_logits[valid], stop_target[valid])
    return loss_points, loss_stop


class TextRoIHeads(RoIHeads):
    """RoIHeads plus the point-pair LSTM; results gain "keypoints" (N, 2T, 2) and "num_pairs"."""

    def __init__(self, *args, pair_head: PointPairHead, pair_loss_weight: float = 1.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.pair_head = pair_head
        self.pair_loss_weight = pair_loss_weight

    def forward(self, features, proposals, image_shapes, targets=None):
        if self.training:
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        if self.training:
            loss_classifier, loss_box_reg = fastrcnn_loss(class_logits, box_regression, labels, regression_targets)
            pos_feats, rel_targets, counts = [], [], []
            offset = 0
            for props, m, lab, t in zip(proposals, matched_idxs, labels, targets, strict=True):
                pos = torch.where(lab > 0)[0]
                gt = m[pos]
                pos_feats.append(box_features[offset + pos])
                pts = t["keypoints"][gt].unflatten(1, (-1, 2))  # (P, T, 2, 2)
                rel_targets.append(encode_pairs(pts, props[pos]))
                counts.append(t["num_pairs"][gt])
                offset += len(props)
            rel, stop = self.pair_head(torch.cat(pos_feats))
            loss_points, loss_stop = pair_losses(rel, stop, torch.cat(rel_targets), torch.cat(counts))
            w = self.pair_loss_weight
            return [], {
                "loss_classifier": loss_classifier,
                "loss_box_reg": loss_box_reg,
                "loss_points": w * loss_points,
                "loss_stop": w * loss_stop,
            }
        boxes, scores, labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
        det_features = self.box_head(self.box_roi_pool(features, boxes, image_shapes))
        rel, stop = self.pair_head(det_features)
        if len(boxes) == 1:  # no slicing: a traced len(b) would freeze the example's detection count
            rels, stops = [rel], [stop]
        else:
            counts = [len(b) for b in boxes]
            rels, stops = rel.split(counts), stop.split(counts)
        results = []
        for b, s, lab, r, st in zip(boxes, scores, labels, rels, stops, strict=True):
            # (N, 2T, 2) with 2T spelt out: a traced flatten reshapes to (N, -1, 2), which no
            # runtime can do when N is 0
            pts = decode_pairs(r, b).reshape(-1, 2 * r.shape[1], 2)
            if torch.jit.is_tracing():  # torchvision's traced keypoint resize wants (x, y, visibility)
                pts = torch.cat([pts, torch.ones_like(pts[..., :1])], dim=-1)
            results.append({"boxes": b, "scores": s, "labels": lab, "keypoints": pts, "num_pairs": pair_counts(st)})
        return results, {}
