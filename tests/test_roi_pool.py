"""The RoI pooler joins FPN levels by one gather: the features torchvision's pooler gives, and
an ONNX graph without the per-level scatters (nor a Pad before TensorFlow-padded convolutions)."""

from __future__ import annotations

from collections import OrderedDict

import onnx
import torch
from torchvision.ops import MultiScaleRoIAlign

from regiondet.inference.onnx_model import onnx_bytes
from regiondet.inference.predictor import model_from_checkpoint
from regiondet.models.roi_pool import GatheredRoIAlign
from regiondet.models.zoo import resolve_model_path


def test_gathered_pooling_gives_torchvisions_features():
    torch.manual_seed(0)
    x = OrderedDict(
        [("a", torch.randn(2, 8, 52, 70)), ("b", torch.randn(2, 8, 26, 35)), ("pool", torch.randn(2, 8, 13, 18))]
    )
    boxes = []
    for _ in range(2):
        xy = torch.rand(40, 2) * 500
        wh = torch.rand(40, 2) ** 2 * 400 + 4  # small and large: RoIs on every level
        boxes.append(torch.cat([xy, xy + wh], 1))
    shapes = [(416, 560), (416, 560)]
    ours = GatheredRoIAlign(["a", "b", "pool"], 7, 2)(x, boxes, shapes)
    theirs = MultiScaleRoIAlign(["a", "b", "pool"], 7, 2)(x, boxes, shapes)
    levels = MultiScaleRoIAlign(["a", "b", "pool"], 7, 2)
    levels(x, boxes, shapes)
    assert len(set(levels.map_levels(boxes).tolist())) >= 2  # the test joins levels
    torch.testing.assert_close(ours, theirs)


def test_the_exported_detector_has_no_scatter_and_no_pad_before_a_convolution():
    """The two copies ONNX Runtime spent time on: the levels' scatters, and a padded copy of each
    strided layer's input (TensorFlow's uneven SAME pads are the Conv's own `pads`)."""
    path = resolve_model_path("default")
    model, cfg, ckpt = model_from_checkpoint(path)
    graph = onnx.load_from_string(onnx_bytes(model, cfg, float(ckpt["default_score"]))).graph
    ops = {n.op_type for n in graph.node}
    assert "RoiAlign" in ops and "ScatterElements" not in ops and "ScatterND" not in ops
    padded = {n.output[0] for n in graph.node if n.op_type == "Pad"}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert not any(i in padded for n in convs for i in n.input)
    uneven = [n for n in convs for a in n.attribute if a.name == "pads" and len(set(a.ints)) > 1]
    assert len(uneven) == 5  # the trunk's strided layers
