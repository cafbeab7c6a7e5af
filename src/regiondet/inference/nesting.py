"""Suppression of boxes nested inside a larger box of the same class.

Class-wise NMS keeps a camera's lens boxed inside the camera's own box: their IoU is small, so
neither suppresses the other, and the lens box is a false positive that costs AP. Here a box is
dropped when most of its area lies inside a larger box of its class that scores at least a set
share of its score (a weak container must not hide a confident object), and the container must
itself be shown at the operating score, so that an image never loses its last detection.
"""

from __future__ import annotations

import torch


def nested_boxes(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    labels: torch.Tensor,
    inside: float,
    score_ratio: float,
    min_container_score: float = 0.0,
) -> torch.Tensor:
    """Mask of boxes to drop: >= `inside` of their area within a larger same-class box scoring
    >= `score_ratio` x theirs and >= `min_container_score`. Boxes are (N, 4) xyxy."""
    if len(boxes) < 2:
        return torch.zeros(len(boxes), dtype=torch.bool, device=boxes.device)
    lt = torch.max(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.min(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(dim=2)  # [i, j]: area shared by boxes i and j
    area = (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)
    within = inter >= inside * area[:, None].clamp(min=1e-6)  # i lies (mostly) inside j
    larger = area[None, :] > area[:, None]
    same = labels[:, None] == labels[None, :]
    strong = (scores[None, :] >= score_ratio * scores[:, None]) & (scores[None, :] >= min_container_score)
    return (within & larger & same & strong).any(dim=1)
