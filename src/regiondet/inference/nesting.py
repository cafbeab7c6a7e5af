"""Suppression of boxes nested inside a larger box: of the same class, or of another class.

Class-wise NMS keeps a camera's lens boxed inside the camera's own box: their IoU is small, so
neither suppresses the other, and the lens box is a false positive that costs AP. Here a box is
dropped when most of its area lies inside a larger box of its class that scores at least a set
share of its score (a weak container must not hide a confident object), and the container must
itself be shown at the operating score, so that an image never loses its last detection.
"""

from __future__ import annotations

import torch


def intersections(boxes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, N) area shared by boxes i and j, and (N,) each box's area; boxes (N, 4) xyxy."""
    lt = torch.max(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.min(boxes[:, None, 2:], boxes[None, :, 2:])
    return (rb - lt).clamp(min=0).prod(dim=2), (boxes[:, 2:] - boxes[:, :2]).clamp(min=0).prod(dim=1)


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
    inter, area = intersections(boxes)
    within = inter >= inside * area[:, None].clamp(min=1e-6)  # i lies (mostly) inside j
    larger = area[None, :] > area[:, None]
    same = labels[:, None] == labels[None, :]
    strong = (scores[None, :] >= score_ratio * scores[:, None]) & (scores[None, :] >= min_container_score)
    return (within & larger & same & strong).any(dim=1)


def containers_of_other_class(
    boxes: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor, inside: float, min_score: float = 0.0
) -> torch.Tensor:
    """(N,) index of the box each box is part of, -1 for none: the best-scoring larger box of
    another class holding >= `inside` of its area and scoring at least as much as it, both at
    `min_score` or above (a camera's screen boxed as a phone inside the camera's box is the
    camera; a better-scoring phone inside a weak camera box is not swallowed by it, and a box
    under the operating score is left as it is, so AP's low-score tail is not touched)."""
    holder = torch.full((len(boxes),), -1, dtype=torch.long, device=boxes.device)
    if len(boxes) < 2:
        return holder
    inter, area = intersections(boxes)
    holds = (
        (inter >= inside * area[:, None].clamp(min=1e-6))
        & (area[None, :] > area[:, None])
        & (labels[:, None] != labels[None, :])
        & (scores[None, :] >= scores[:, None])
        & (scores[:, None] >= min_score)
    )  # [i, j]: box j holds box i
    best = torch.where(holds, scores[None, :], torch.full_like(inter, -1.0)).max(dim=1)
    return torch.where(best.values >= 0, best.indices, holder)
