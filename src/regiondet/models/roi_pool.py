"""Multi-scale RoIAlign whose levels are joined by one gather, not a scatter per level.

torchvision's MultiScaleRoIAlign pools each FPN level's RoIs apart and, when traced for ONNX,
writes them back into place with a ScatterElements per level whose index is as large as the
pooled features (150 RoIs x 256 x 7 x 7 each time). ONNX Runtime runs that element by element:
on 2 CPU threads it cost the default detector more than the RoIAlign itself (15 % of a frame
against 11 %). Pooling each level's RoIs, stacking them level by level and reading the stack in
the RoIs' own order (one Gather of whole rows) gives the same features.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign, roi_align
from torchvision.ops.poolers import LevelMapper, _convert_to_roi_format, _filter_input, _setup_scales


class GatheredRoIAlign(MultiScaleRoIAlign):
    """torchvision's MultiScaleRoIAlign (same arguments, levels and results), levels joined by
    a gather."""

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        features = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level
            )
        return gathered_roi_align(features, boxes, self.output_size, self.sampling_ratio, self.scales, self.map_levels)


def gathered_roi_align(
    features: list[Tensor],
    boxes: list[Tensor],
    output_size: tuple[int, int],
    sampling_ratio: int,
    scales: list[float],
    mapper: LevelMapper,
) -> Tensor:
    """(N, C, h, w): each RoI pooled from the level `mapper` gives it, in the order of `boxes`."""
    rois = _convert_to_roi_format(boxes)
    if len(features) == 1:
        return roi_align(features[0], rois, output_size, scales[0], sampling_ratio)
    levels = mapper(boxes)
    order, pooled = [], []
    for level, (feature, scale) in enumerate(zip(features, scales, strict=True)):
        idx = torch.where(levels == level)[0]
        order.append(idx)
        pooled.append(roi_align(feature, rois[idx], output_size, scale, sampling_ratio).to(features[0].dtype))
    return torch.cat(pooled)[torch.argsort(torch.cat(order))]
