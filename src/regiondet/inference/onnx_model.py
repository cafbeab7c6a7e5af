"""ONNX export of a detector, and an ONNX Runtime model the Detector drives like the PyTorch one.

Deployment on a CPU without PyTorch, and a faster forward here (torchvision's Faster R-CNN
runs about twice as fast in ONNX Runtime on this machine). The exported graph is the whole
torchvision model but its resize, NMS included: one image tensor (3, H, W) in [0, 1] in,
boxes / labels / scores out. The config and default score travel in the file's metadata, so
`Detector.load("model.onnx")` knows the classes. OnnxModel resizes each image first, exactly
as PyTorch does, so both give the same detections; since the size is chosen outside the graph,
the test size and multi-scale testing (`test_scales`) stay settable at load time, as do the
other settings applied in Python (OUTSIDE_KEYS). Files exported before this kept the resize in
the graph (at the size they were exported with) and take no size settings. A text model's
point-pair LSTM always runs its max_pairs steps (the stop labels only cut the outline
afterwards), so its graph is static too: it adds keypoints and num_pairs outputs, and the
polygon NMS stays in Python (shapely), as for the PyTorch model.
"""

from __future__ import annotations

import importlib.util
import io
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from regiondet.config import Config, config_from_dict, inference_overrides
from regiondet.errors import UserError
from regiondet.io import atomic_write_bytes
from regiondet.models.fold_bn import fold_batch_norms
from regiondet.models.sizes import scale_of, test_sizes

CONFIG_KEY, SCORE_KEY = "regiondet_config", "regiondet_default_score"
# The layout of regiondet's ONNX files (inputs, outputs, metadata), as checkpoints carry theirs:
# a file from a newer regiondet is refused with a clear line instead of misread.
FORMAT_KEY, ONNX_FORMAT = "regiondet_format", 1
RESIZE_KEY = "regiondet_resize"  # "outside": the graph takes images at the size it is given
# inference settings applied outside the graph, so an exported file still takes them (--set)
OUTSIDE_KEYS = (
    "test_min_size",
    "test_max_size",
    "test_scales",
    "test_scales_focus",
    "test_scales_live",
    "test_flip",
    "polygon_nms_thresh",
    "box_contained_thresh",
    "box_contained_score_ratio",
    "box_cross_class_iou",
    "box_cross_class_inside",
)
SETTABLE = frozenset(f"model.{k}" for k in OUTSIDE_KEYS)  # the --set keys an exported file still takes
# in the order the models fill their result dicts, which is the order the tracer flattens them in
OUTPUTS = {"box": ("boxes", "labels", "scores"), "text": ("boxes", "scores", "labels", "keypoints", "num_pairs")}


def onnx_available() -> bool:
    """Both onnx (to export) and onnxruntime (to run) are installed."""
    return all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


def onnxruntime_available() -> bool:
    """ONNX Runtime is installed (enough to run an .onnx file)."""
    return importlib.util.find_spec("onnxruntime") is not None


def settable_outside_graph(overrides: list[str] | None) -> bool:
    """Every override (`model.key=value`) is a setting an exported file still takes."""
    return all(item.partition("=")[0] in SETTABLE for item in overrides or [])


def require(name: str):
    """The module `name` (onnx, onnxruntime or one of their submodules), or a one-line error
    saying which extra installs it."""
    try:
        module = importlib.import_module(name)
    except ImportError:
        raise UserError(f"ONNX needs the '{name}' package: pip install 'regiondet[onnx]'") from None
    if name == "onnxruntime":  # besides ORT_DISABLE_TELEMETRY (regiondet/__init__.py): no events either
        module.disable_telemetry_events()
    return module


def onnx_bytes(model: torch.nn.Module, cfg: Config, score: float, opset: int = 17) -> bytes:
    """The model traced on one image as an ONNX graph, config and score in its metadata, in
    memory. The model's batch norms are folded in place: pass a model you no longer train."""
    onnx = require("onnx")
    # frozen norms merged into their convolutions (only eval-mode norms fold, so eval first): a
    # norm left in becomes a Mul and an Add that split each int8 convolution from its ReLU
    fold_batch_norms(model.eval())
    side = test_sizes(cfg.model)[0]
    example = torch.rand(3, side, side)
    outputs = OUTPUTS[cfg.model.task]
    axes = {"image": {1: "height", 2: "width"}, **{name: {0: "n"} for name in outputs}}
    # OnnxModel resizes before the graph, so the graph's own resize is left out: any size in
    model.transform.resize = lambda image, target=None: (image, target)
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():  # the tracer warns about every Python number it freezes
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                ([example],),
                buffer,
                input_names=["image"],
                output_names=list(outputs),
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,
            )
    finally:
        del model.transform.resize  # the class's resize again
    proto = onnx.load_from_string(buffer.getvalue())
    meta = {
        FORMAT_KEY: str(ONNX_FORMAT),
        CONFIG_KEY: json.dumps(cfg.to_dict()),
        SCORE_KEY: str(score),
        RESIZE_KEY: "outside",
    }
    onnx.helper.set_model_props(proto, meta)
    return proto.SerializeToString()


def export_onnx(model: torch.nn.Module, cfg: Config, score: float, path: Path, opset: int = 17) -> None:
    """onnx_bytes written to `path` atomically."""
    atomic_write_bytes(Path(path), onnx_bytes(model, cfg, score, opset))


def resize_for_graph(x: torch.Tensor, sizes: tuple[int, int]) -> torch.Tensor:
    """torchvision's eager resize to (shorter side, longer-side cap), done before the graph (the
    graph has none: a traced resize rounds the output size in float32 and can come out a pixel
    short, which moves low-score boxes)."""
    scale = scale_of(sizes, *x.shape[-2:])
    return torch.nn.functional.interpolate(
        x[None], scale_factor=scale, mode="bilinear", recompute_scale_factor=True, align_corners=False
    )[0]


class OnnxClassifier:
    """A crop classifier (the crop verifier: trunk and probe) traced and run by ONNX Runtime:
    (N, 3, side, side) crops in, (N,) logits out; any N."""

    def __init__(self, module: torch.nn.Module, side: int, threads: int | None = None):
        ort = require("onnxruntime")
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                (torch.rand(2, 3, side, side),),
                buffer,
                input_names=["crops"],
                output_names=["logits"],
                dynamic_axes={"crops": {0: "n"}, "logits": {0: "n"}},
                opset_version=17,
                dynamo=False,
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        # its threads must not spin-wait after each call: they would take the cores from the
        # detector's session, which runs next (one frame took twice as long with spinning on)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, crops: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.session.run(None, {"crops": crops.float().contiguous().numpy()})[0])


class OnnxModel:
    """Called like a torchvision detector in eval mode: a list of one (3, H, W) tensor in,
    a list of one dict of boxes / labels / scores (text: and keypoints / num_pairs) out."""

    def __init__(self, path: Path | bytes, threads: int | None = None, overrides: list[str] | None = None):
        ort = require("onnxruntime")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # see OnnxClassifier
        try:
            graph = path if isinstance(path, bytes) else str(path)
            self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable files
            raise UserError(f"not a readable ONNX model ({str(e).splitlines()[0][:120]})", path) from None
        path = "(in memory)" if isinstance(path, bytes) else path
        meta = self.session.get_modelmeta().custom_metadata_map
        if CONFIG_KEY not in meta:
            raise UserError("an ONNX model without regiondet's config: export it with `regiondet export`", path)
        if not meta.get(FORMAT_KEY, "0").isdigit() or int(meta.get(FORMAT_KEY, "0")) > ONNX_FORMAT:
            raise UserError("ONNX file written by a newer regiondet; upgrade regiondet", path)
        config = config_from_dict(json.loads(meta[CONFIG_KEY]), str(path))
        self.resize_outside = meta.get(RESIZE_KEY) == "outside"
        self.config = self._with(config, overrides or [], path)
        self.default_score = float(meta.get(SCORE_KEY, self.config.train.eval_score))
        self.test_sizes = test_sizes(self.config.model)  # what the resize reads; multi-scale changes it
        self.outputs = [o.name for o in self.session.get_outputs()]

    def _with(self, config: Config, overrides: list[str], path: Path) -> Config:
        """The file's config with the settings applied outside the graph changed."""
        for item in overrides:
            key = item.partition("=")[0]
            if key not in SETTABLE:
                known = ", ".join(sorted(SETTABLE))
                raise UserError(f"--set {key} is fixed in the ONNX graph at export (settable here: {known})", path)
            if key.startswith("model.test_") and not self.resize_outside:
                raise UserError(f"--set {key}: an older export, resized inside its graph; export it again", path)
        return inference_overrides(config, overrides, str(path)) if overrides else config

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        out = []
        for x in images:
            resized = resize_for_graph(x.detach().cpu().float(), self.test_sizes)
            result = dict(zip(self.outputs, self.session.run(None, {"image": resized.numpy()}), strict=True))
            result = {k: torch.from_numpy(np.asarray(v)) for k, v in result.items()}
            ratio = torch.tensor([x.shape[-1] / resized.shape[-1], x.shape[-2] / resized.shape[-2]])
            result["boxes"] = result["boxes"] * ratio.repeat(2)
            if "keypoints" in result:
                result["keypoints"] = result["keypoints"][..., :2] * ratio  # traced with a visibility column
            out.append(result)
        return out

    def eval(self) -> OnnxModel:
        return self

    def to(self, device: str | torch.device = "cpu", **_) -> OnnxModel:
        if torch.device(device).type != "cpu":
            raise UserError("ONNX models run on the CPU here (onnxruntime's CPU provider)")
        return self
