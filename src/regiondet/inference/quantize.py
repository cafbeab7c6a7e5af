"""Static int8 quantization of an exported detector for ONNX Runtime.

On a CPU with int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, ARM dot-product) ONNX
Runtime runs int8 convolutions two to three times faster than float ones, and the file is a
quarter of the size. Only the feature extractor, the RPN head and the box head's fully connected
layers are quantized: they hold nearly all the weights and time. The layers that write scores,
box offsets and outline points stay float, so the outputs keep their precision. Activation
ranges are calibrated on real images read at the model's test sizes, by min/max (ONNX Runtime's
default) or from histograms (a high percentile, or the range that keeps the most information:
one rare large value then no longer widens a layer's steps for every image); weights are
quantized per output channel. A quantized file carries how it was
calibrated in its metadata and loads like any regiondet ONNX file.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from regiondet.config import Config
from regiondet.data.images import load_upright
from regiondet.data.spec import load_spec
from regiondet.errors import UserError
from regiondet.inference.multiscale import scale_sizes, sizes_at
from regiondet.inference.onnx_model import onnx_bytes, require, resize_for_graph
from regiondet.inference.predictor import to_tensor
from regiondet.io import atomic_write_bytes

# node-name prefixes of the parts quantized (torch.onnx names nodes by module path)
QUANTIZED_PARTS = ("/backbone/", "/rpn/head/", "/roi_heads/box_head/")
# ReLU and max pooling too, so a layer's uint8 output feeds the next one as it is: left in float,
# each sat between a dequantize and a quantize on a full-size map (a seventh of a CRAFT reading)
# (only in the backbone: folding the heads' ReLUs into their ranges cost text_fast words)
ACTIVATION_OPS, ACTIVATION_PARTS = ("Relu", "MaxPool"), ("/backbone/",)
QUANTIZED_OPS = ("Conv", "Gemm", *ACTIVATION_OPS)
INT8_KEY = "regiondet_int8"  # metadata: how the file was calibrated
# --calibrate-method: ONNX Runtime's calibrators (percentile keeps 99.999 % of each layer's values)
CALIBRATION_METHODS = {"minmax": "MinMax", "percentile": "Percentile", "entropy": "Entropy"}


@dataclass(frozen=True)
class Calibration:
    """How an int8 export sets its activation ranges: `images` images spread over the data of
    `specs`, read at `sides` px (default the model's test sizes), ranges by `method`."""

    specs: list[str]
    images: int = 16
    sides: list[int] | None = None
    method: str = "minmax"

    def __post_init__(self) -> None:
        if not self.specs:
            raise UserError("int8 export needs at least one calibration data spec")
        if self.method not in CALIBRATION_METHODS:
            raise UserError(f"calibration method '{self.method}' is not one of {', '.join(CALIBRATION_METHODS)}")
        if self.images < 1:
            raise UserError(f"int8 export needs at least one calibration image, not {self.images}")


def calibration_sizes(cfg: Config, sides: list[int] | None) -> list[tuple[int, int]]:
    """(shorter side, longer-side cap) for the calibration images: the model's own reading sizes,
    or `sides` with the cap in the model's proportion (ranges measured at one size can suit a
    model read at another better than its own size's: choose on validation images)."""
    if not sides:
        return scale_sizes(cfg.model)
    if any(int(s) < 32 for s in sides):
        raise UserError(f"calibration sizes are shorter sides in pixels (at least 32), not {sides}")
    return sizes_at(cfg.model, sides)


def calibration_images(specs: list[str], count: int, cfg: Config, sides: list[int] | None = None) -> list[np.ndarray]:
    """`count` images spread evenly over the data of `specs`, each resized as the model reads
    it (or to `sides`); consecutive images take the sizes in turn (multi-scale models are
    calibrated at every size they read)."""
    samples = [s for spec in specs for s in load_spec(spec)]
    if not samples:
        raise UserError(f"no calibration images in {', '.join(specs)}")
    picks = [samples[i] for i in np.linspace(0, len(samples) - 1, min(count, len(samples))).round().astype(int)]
    sizes = calibration_sizes(cfg, sides)
    images = []
    for i, sample in enumerate(picks):
        x = to_tensor(load_upright(sample.path))
        images.append(resize_for_graph(x, sizes[i % len(sizes)]).numpy())
    return images


def _grouped(node) -> bool:
    return any(a.name == "group" and a.i > 1 for a in node.attribute)


def quantized_nodes(model) -> list[str]:
    """The names of the nodes quantized: the convolutions and fully connected layers of
    QUANTIZED_PARTS and the ReLUs and max pools of ACTIVATION_PARTS, but depthwise (grouped)
    convolutions, which hold little of the time and lose the most precision in int8 (one small
    filter per channel)."""
    return [
        n.name
        for n in model.graph.node
        if n.op_type in QUANTIZED_OPS
        and n.name.startswith(ACTIVATION_PARTS if n.op_type in ACTIVATION_OPS else QUANTIZED_PARTS)
        and not _grouped(n)
    ]


class _NoPreprocessAdvice(logging.Filter):
    """Drops ONNX Runtime's advice to run its shape pre-processing first: it is for models with
    fixed shapes, and a detector's graph quantizes its Conv / Gemm layers without it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-process" not in record.getMessage()


def quantize_onnx(graph: bytes, images: list[np.ndarray], about: str, method: str = "minmax") -> bytes:
    """The float graph `graph` (regiondet's ONNX bytes) with its main layers in int8 (QDQ),
    activation ranges from `images` by `method` (CALIBRATION_METHODS); `about` (where the images
    came from) goes in its metadata."""
    quantization = require("onnxruntime.quantization")
    onnx = require("onnx")
    model = onnx.load_from_string(graph)
    nodes = quantized_nodes(model)

    class Reader(quantization.CalibrationDataReader):
        """One image at a time (ONNX Runtime's strided calibration): the histogram calibrators
        otherwise hold every layer's output for every image in memory at once."""

        def __init__(self) -> None:
            self.set_range(0, len(images))

        def __len__(self) -> int:
            return len(images)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.items = iter(images[start_index:end_index])

        def get_next(self) -> dict | None:
            image = next(self.items, None)
            return None if image is None else {"image": image}

    quiet = _NoPreprocessAdvice()
    logging.getLogger().addFilter(quiet)
    try:
        # the histogram calibrators print their progress: keep it off regiondet's stdout (JSON, file names)
        with tempfile.TemporaryDirectory(prefix="regiondet-int8-") as tmp, contextlib.redirect_stdout(io.StringIO()):
            src, dst = Path(tmp) / "float.onnx", Path(tmp) / "int8.onnx"
            src.write_bytes(graph)
            quantization.quantize_static(
                str(src),
                str(dst),
                Reader(),
                quant_format=quantization.QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                nodes_to_quantize=nodes,
                per_channel=True,
                # 7-bit weights: CPUs without VNNI (AVX2 / AVX-512 only) multiply uint8 x int8 with an
                # int16 sum that saturates at 8 bits, losing boxes; the same file must work on any x86
                reduce_range=True,
                activation_type=quantization.QuantType.QUInt8,
                weight_type=quantization.QuantType.QInt8,
                calibrate_method=getattr(quantization.CalibrationMethod, CALIBRATION_METHODS[method]),
                extra_options={"CalibStridedMinMax": 1},  # any method, despite the name: see Reader
            )
            quantized = onnx.load(str(dst))
    finally:
        logging.getLogger().removeFilter(quiet)
    props = {p.key: p.value for p in model.metadata_props}
    props[INT8_KEY] = json.dumps({"layers": len(nodes), "calibration": about, "images": len(images), "method": method})
    onnx.helper.set_model_props(quantized, props)
    buffer = io.BytesIO()
    onnx.save(quantized, buffer)
    return buffer.getvalue()


def export_int8(model: torch.nn.Module, cfg: Config, score: float, out: Path, calibration: Calibration) -> None:
    """`model` exported to ONNX, quantized as `calibration` says, written atomically."""
    sizes = calibration_sizes(cfg, calibration.sides)
    images = calibration_images(calibration.specs, calibration.images, cfg, calibration.sides)
    read_at = " + ".join(f"{m} px" for m, _ in sizes)
    about = f"{len(images)} images of {', '.join(calibration.specs)} read at {read_at}"
    graph = quantize_onnx(onnx_bytes(model, cfg, score), images, about, calibration.method)
    atomic_write_bytes(Path(out), graph)
