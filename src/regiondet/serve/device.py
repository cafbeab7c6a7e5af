"""A box model as the page runs it on the device: ONNX graphs for ONNX Runtime Web, made from the
served checkpoint when the page first asks, and the settings the page's post-processing needs.

The page hands each graph the frame as the canvas holds it (height x width x 4 RGBA bytes) and
the size to read it at; the graphs turn it into what `Detector.predict` gives its model, with
the same operations: the RGB bytes / 255 in float32, then the bilinear resize torchvision's
transform does (ONNX Resize, half-pixel, the output size the page computes as `scale_of`). The
detector graph is `regiondet export`'s (resize outside the graph) with that front end; the
verifier graph cuts each box's crop from the full frame (RoIAlign, as `CropVerifier.crops`) and
gives its lens probability. What stays in Python in `Detector.predict` (the verifier's product,
the one-box-per-object merge, nested boxes, the score) is ported to the page's device.js.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from regiondet.data.images import MAX_PIXELS
from regiondet.errors import UserError
from regiondet.inference.multiscale import FLIP_SAME_IOU, scale_sizes
from regiondet.inference.onnx_model import onnx_bytes, require
from regiondet.inference.predictor import model_from_checkpoint
from regiondet.models.fold_bn import fold_batch_norms
from regiondet.models.sizes import test_sizes
from regiondet.models.verifier import CropVerifier, readings
from regiondet.models.zoo import resolve_model_path

OPSET = 17
DEVICE_FILES = ("settings.json", "detector.onnx", "verifier.onnx")
PREFIX = "device_"  # names of the nodes and constants the front end adds to a graph


@dataclass
class DeviceModel:
    """What the page downloads for one model: its graphs and the settings for device.js."""

    detector: bytes
    verifier: bytes | None
    settings: dict


class RgbaVerifier(nn.Module):
    """(H, W, 4) RGBA bytes and (N, 4) boxes -> (N,) lens probabilities and, where the class
    probe is fitted, (N, C) class shares: `CropVerifier.look`."""

    def __init__(self, verifier: CropVerifier):
        super().__init__()
        self.verifier = verifier

    def forward(self, rgba: Tensor, boxes: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        image = rgba[..., :3].permute(2, 0, 1).float() / 255
        lens, kinds = readings(self.verifier(self.verifier.crops(image, boxes)))
        return lens if kinds is None else (lens, kinds)


def device_model(name: str, overrides: list[str] | None = None) -> DeviceModel:
    """The graphs and settings of a box model (a shipped name or a checkpoint file) with inference
    `overrides` (model.KEY=VALUE); a text model or an .onnx file is a one-line error (the page runs
    box models on the device)."""
    path = resolve_model_path(name)
    if path.suffix.lower() == ".onnx":
        raise UserError("the page runs a checkpoint on the device, not an exported .onnx file", path)
    model, cfg, ckpt = model_from_checkpoint(path, overrides)
    if cfg.model.task != "box":
        raise UserError("only box models run on the device (text models run on the server)", path)
    if cfg.model.test_scales and cfg.model.test_scales_focus:
        raise UserError(
            "a model that reads its extra sizes around small boxes (model.test_scales_focus) runs on the server only",
            path,
        )
    score = float(ckpt.get("default_score", cfg.train.eval_score))
    detector = rgba_front(onnx_bytes(model.float(), cfg, score, OPSET))
    verifier, crop = None, None
    if ckpt.get("verifier") is not None and cfg.model.verify:
        checker = CropVerifier.from_state(ckpt["verifier"], path)
        fold_batch_norms(checker)
        verifier, crop = verifier_bytes(checker), {"crop": checker.settings.crop, "grow": checker.settings.grow}
    m = cfg.model
    min_size, max_size = test_sizes(m)
    settings = {
        "classes": list(m.classes),
        "score": score,
        "min_size": min_size,
        "max_size": max_size,
        "cross_class_iou": m.box_cross_class_iou,
        "cross_class_inside": m.box_cross_class_inside,
        "contained_thresh": m.box_contained_thresh,
        "contained_score_ratio": m.box_contained_score_ratio,
        "flip": m.test_flip,  # a still is also read mirrored (multiscale.averaged)
        # more sizes each still is read at (and each live frame where scales_live), the readings
        # merged as multiscale.merge_outputs merges them: class-wise NMS, at most `limit` boxes
        "scales": [list(size) for size in scale_sizes(m)[1:]],
        "scales_live": m.test_scales_live,
        "nms_thresh": m.box_nms_thresh,
        "limit": m.box_detections_per_img,
        "flip_iou": FLIP_SAME_IOU,
        "verifier": crop,
        # the verifier's class shares' weight where it reads classes (Detector.predict's reclassified)
        "verify_classes": m.verify_classes if verifier is not None and checker.kinds is not None else 0,
        "max_pixels": MAX_PIXELS,  # the page refuses larger images, as the server does
    }
    return DeviceModel(detector, verifier, settings)


def rgba_front(graph: bytes) -> bytes:
    """A graph that takes `image` (3, h, w) floats in [0, 1] at the size it reads, given inputs
    `rgba` (H, W, 4) bytes and `size` (2,) int64 [h, w] instead, turned into `image` as
    `to_tensor` and `resize_for_graph` do."""
    onnx = require("onnx")
    helper, tp = onnx.helper, onnx.TensorProto
    proto = onnx.load_from_string(graph)
    g = proto.graph
    old = next((i for i in g.input if i.name == "image"), None)
    if old is None:
        raise UserError("an ONNX detector graph without an `image` input")
    g.input.remove(old)
    p = PREFIX

    def const(name: str, values: list, kind: int = tp.INT64):
        return helper.make_tensor(p + name, kind, [len(values)], values)

    g.initializer.extend(
        [
            const("rgb_start", [0]),
            const("rgb_end", [3]),
            const("rgb_axis", [2]),
            const("batch_axis", [0]),
            const("batch_channels", [1, 3]),
            helper.make_tensor(p + "byte_max", tp.FLOAT, [], [255.0]),
        ]
    )
    front = [
        helper.make_node("Slice", ["rgba", p + "rgb_start", p + "rgb_end", p + "rgb_axis"], [p + "rgb"]),
        helper.make_node("Transpose", [p + "rgb"], [p + "chw"], perm=[2, 0, 1]),
        helper.make_node("Cast", [p + "chw"], [p + "chw_float"], to=tp.FLOAT),
        helper.make_node("Div", [p + "chw_float", p + "byte_max"], [p + "unit"]),
        helper.make_node("Unsqueeze", [p + "unit", p + "batch_axis"], [p + "batch"]),
        helper.make_node("Concat", [p + "batch_channels", "size"], [p + "sizes"], axis=0),
        helper.make_node(
            "Resize",
            [p + "batch", "", "", p + "sizes"],
            [p + "resized"],
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),
        helper.make_node("Squeeze", [p + "resized", p + "batch_axis"], ["image"]),
    ]
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(front + nodes)
    g.input.insert(0, helper.make_tensor_value_info("size", tp.INT64, [2]))
    g.input.insert(0, helper.make_tensor_value_info("rgba", tp.UINT8, ["height", "width", 4]))
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


def verifier_bytes(verifier: CropVerifier) -> bytes:
    """The crop verifier with its crops cut in the graph: `rgba` (H, W, 4) bytes and `boxes`
    (N, 4) in, `probability` (N,) out, and `classes` (N, C) where it reads classes too."""
    outputs = ["probability"] + (["classes"] if verifier.kinds is not None else [])
    buffer = io.BytesIO()
    example = (torch.randint(0, 255, (48, 64, 4), dtype=torch.uint8), torch.tensor([[4.0, 4.0, 30.0, 40.0]] * 2))
    with warnings.catch_warnings():  # the tracer warns about every Python number it freezes
        warnings.simplefilter("ignore")
        torch.onnx.export(
            RgbaVerifier(verifier).eval(),
            example,
            buffer,
            input_names=["rgba", "boxes"],
            output_names=outputs,
            dynamic_axes={"rgba": {0: "height", 1: "width"}, "boxes": {0: "n"}} | {name: {0: "n"} for name in outputs},
            opset_version=OPSET,
            dynamo=False,
        )
    return buffer.getvalue()
