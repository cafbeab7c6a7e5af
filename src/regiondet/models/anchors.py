"""The anchors a config's `anchor_sizes` and `aspect_ratios` make, for the RPN and for checks."""

from __future__ import annotations

import numpy as np
import torch
from torchvision.models.detection.anchor_utils import AnchorGenerator

from regiondet.config import ModelConfig
from regiondet.errors import UserError


def anchor_levels(cfg: ModelConfig) -> list[list[int]]:
    """anchor_sizes as one list per feature map: `[16, 32]` (one size per map) or
    `[[16, 24], [32, 48]]` (several per map, as detectron2's ANCHOR_GENERATOR.SIZES)."""
    return [[int(v) for v in s] if isinstance(s, list | tuple) else [int(s)] for s in cfg.anchor_sizes]


def anchor_shapes(cfg: ModelConfig) -> np.ndarray:
    """(K, 2) widths and heights of every anchor the config makes, rounded as torchvision does."""
    sizes = sorted({s for level in anchor_levels(cfg) for s in level})
    cell = AnchorGenerator().generate_anchors(sizes, [float(r) for r in cfg.aspect_ratios], torch.float32)
    return torch.unique(cell[:, 2:] - cell[:, :2], dim=0).numpy()


def anchor_generator(cfg: ModelConfig, num_maps: int) -> AnchorGenerator:
    """One entry of anchor_sizes per feature map when the counts match (an entry may list
    several sizes), else every size on every map."""
    ratios = tuple(float(r) for r in cfg.aspect_ratios)
    levels = anchor_levels(cfg)
    if len(levels) == num_maps:
        per_map = tuple(tuple(level) for level in levels)
    elif any(len(level) > 1 for level in levels):
        raise UserError(f"model.anchor_sizes has {len(levels)} size lists; the backbone has {num_maps} feature maps")
    else:
        per_map = (tuple(level[0] for level in levels),) * num_maps
    return AnchorGenerator(per_map, (ratios,) * num_maps)
