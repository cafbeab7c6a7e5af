"""The Python API: `Detector.load(path_or_name).predict(image)`."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from shapely.geometry import Polygon
from torchvision.ops import box_iou, nms

from regiondet.config import Config, inference_overrides
from regiondet.data.images import load_upright, to_rgb8
from regiondet.data.point_pairs import pairs_to_polygon
from regiondet.errors import UserError
from regiondet.inference.multiscale import run_scales
from regiondet.inference.nesting import containers_of_other_class, nested_boxes
from regiondet.inference.onnx_model import (
    OnnxClassifier,
    OnnxModel,
    onnx_available,
    onnx_bytes,
    onnxruntime_available,
    settable_outside_graph,
)
from regiondet.inference.prediction import Prediction
from regiondet.models.checkpoint import config_of, load_model_state, read_checkpoint
from regiondet.models.faster_rcnn import build_model
from regiondet.models.fold_bn import fold_batch_norms
from regiondet.models.low_rank import low_rank_box_head
from regiondet.models.verifier import CropVerifier
from regiondet.models.zoo import resolve_model_path, shipped_onnx

# Where a model runs: PyTorch, ONNX Runtime (a shipped model's own ONNX file, else exported in
# memory), or "auto": ONNX Runtime where it is installed and gives the same settings.
RUNTIMES = ("torch", "onnxruntime", "auto")


def model_from_checkpoint(
    path: Path, overrides: list[str] | None = None, as_trained: bool = False
) -> tuple[torch.nn.Module, Config, dict]:
    """(model with the checkpoint's weights, its config with inference `overrides`, the checkpoint).
    The box head is factored as `model.box_head_rank` says unless `as_trained` (a checkpoint
    written from it keeps the trained layer, and the setting for the next load)."""
    ckpt = read_checkpoint(path)
    cfg = inference_overrides(config_of(ckpt, path), overrides or [], str(path))
    model = build_model(cfg.model, load_weights=False)
    load_model_state(model, ckpt["model"], path)
    if cfg.model.box_head_rank and not as_trained:
        low_rank_box_head(model, cfg.model.box_head_rank, path)
    return model, cfg, ckpt


def default_runtime(model: str | Path, videos: bool) -> str:
    """What the command line runs a model in unless told: "auto" for videos and cameras (frames
    per second count) and for shipped models with their own ONNX file; else PyTorch (exporting
    a model in memory costs more than it saves on a few images)."""
    return "auto" if videos or shipped_onnx(model) is not None else "torch"


def to_tensor(image: str | Path | Image.Image | np.ndarray | torch.Tensor) -> torch.Tensor:
    """Any common image form to a float CxHxW tensor in [0, 1] (arrays are HxWx3 RGB uint8)."""
    if isinstance(image, (str, Path)):
        image = load_upright(Path(image))
    if isinstance(image, Image.Image):
        image = np.array(to_rgb8(image))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise UserError(f"expected an HxWx3 RGB array, got shape {image.shape}")
        # a read-only array (np.asarray of a PIL image) is copied: torch warns on one it cannot write
        pixels = np.ascontiguousarray(image) if image.flags.writeable else image.copy()
        return torch.from_numpy(pixels).permute(2, 0, 1).float().div_(255)
    if isinstance(image, torch.Tensor):
        return image.float() if image.is_floating_point() else image.float().div(255)
    raise UserError(f"cannot read an image from {type(image).__name__}")


class Detector:
    """A trained detector ready for inference on CPU or GPU."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: Config,
        score: float = 0.5,
        device: str = "cpu",
        verifier: CropVerifier | None = None,
    ):
        self.model = model.eval().to(device)
        self.config = config
        self.classes = list(config.model.classes)
        self.score = score
        self.device = device
        self.runtime = "onnxruntime" if isinstance(model, OnnxModel) else "torch"
        # a second look at each box's crop (models.verifier): `load` passes one when the checkpoint
        # has it and model.verify is on
        self.verifier = verifier.to(device) if verifier is not None else None

    @classmethod
    def load(
        cls,
        path_or_name: str | Path = "default",
        score: float | None = None,
        device: str = "cpu",
        fold: bool = True,
        channels_last: bool = True,
        overrides: list[str] | None = None,
        runtime: str = "torch",
    ) -> Detector:
        """A model by file or shipped name, made fast for inference: batch norms folded into their
        convolutions, and weights in channels-last layout (MobileNetV2's body runs about 2x faster
        on a CPU). The flags turn either off, to measure what it gives. `overrides`
        (`model.key=value`) change inference settings such as the test proposal count.
        `runtime="onnxruntime"` runs the model in ONNX Runtime: a shipped model's own ONNX file if
        it has one (`text`: int8), else the checkpoint exported in memory (the same detections,
        faster on a CPU). "auto" takes the shipped ONNX file when onnxruntime is installed and
        the overrides are all settable outside its graph, else exports box models when onnx and
        onnxruntime are installed, else stays with PyTorch."""
        if runtime not in RUNTIMES:
            raise UserError(f"runtime '{runtime}' is not one of {', '.join(RUNTIMES)}")
        path = resolve_model_path(path_or_name)
        if path.suffix.lower() == ".onnx":
            return cls._load_onnx(path, score, device, overrides)
        shipped = shipped_onnx(path_or_name)
        auto = runtime == "auto" and onnxruntime_available() and settable_outside_graph(overrides)
        if shipped and (runtime == "onnxruntime" or auto):
            return cls._load_onnx(shipped, score, device, overrides)
        model, cfg, ckpt = model_from_checkpoint(path, overrides)
        default = float(ckpt.get("default_score", cfg.train.eval_score))
        verifier = None
        if ckpt.get("verifier") is not None and cfg.model.verify:
            verifier = CropVerifier.from_state(ckpt["verifier"], path)
            if verifier.kinds is not None and verifier.kinds.out_features != len(cfg.model.classes):
                raise UserError(
                    f"its verifier reads {verifier.kinds.out_features} classes, the model has {len(cfg.model.classes)}",
                    path,
                )
            if fold:
                fold_batch_norms(verifier)
        if runtime == "onnxruntime" or (runtime == "auto" and cfg.model.task == "box" and onnx_available()):
            graph = OnnxModel(onnx_bytes(model, cfg, default))
            if verifier is not None:
                verifier.runner = OnnxClassifier(verifier, verifier.settings.crop)
            return cls(graph, graph.config, default if score is None else score, device, verifier)
        if fold:
            fold_batch_norms(model)  # inference only: norms merged into their convolutions
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        return cls(model, cfg, default if score is None else score, device, verifier)

    @classmethod
    def _load_onnx(cls, path: Path, score: float | None, device: str, overrides: list[str] | None) -> Detector:
        """An exported .onnx file run by ONNX Runtime; the settings outside its graph (test sizes,
        multi-scale, polygon NMS) still take overrides, the rest were fixed at export."""
        if not path.is_file():
            raise UserError("model file not found", path)
        model = OnnxModel(path, overrides=overrides)
        return cls(model, model.config, model.default_score if score is None else score, device)

    @torch.inference_mode()
    def predict(self, image, score: float | None = None, live: bool = False) -> Prediction:
        """Detections with score >= score (default: the model's own threshold). A `live` frame
        (video, a camera, the service's WebSocket) is read once, within a frame's time: the
        model's test_flip, a still's second reading, is skipped, and its test_scales too unless
        test_scales_live."""
        x = to_tensor(image).to(self.device)
        floor = self.score if score is None else score
        t0 = time.perf_counter()
        out = run_scales(self.model, x, self.config.model, self.config.model.test_flip and not live, live)
        if self.verifier is not None and "keypoints" not in out:
            out = self._verified(x, out, floor)
        seconds = time.perf_counter() - t0
        keep = out["scores"] >= floor
        polygons = None
        m = self.config.model
        class_scores = None
        if "keypoints" not in out and m.box_cross_class_iou > 0 and len(self.classes) > 1:
            best, class_scores = merged_classes(out, len(self.classes), m.box_cross_class_iou)
            keep &= best  # class-wise NMS has already thinned same-class overlaps above box_nms_thresh
            if "class_shares" in out and m.verify_classes > 0:
                class_scores, out["labels"] = reclassified(class_scores, out["class_shares"], m.verify_classes)
            if m.box_cross_class_inside > 0:
                keep = parts_merged(out, keep, class_scores, m.box_cross_class_inside, self.score)
        if "keypoints" in out:
            keep, polygons = text_polygons(out, keep, m.polygon_nms_thresh)
        elif m.box_contained_thresh > 0:
            shown = torch.where(keep)[0]
            nested = nested_boxes(
                out["boxes"][shown],
                out["scores"][shown],
                out["labels"][shown],
                m.box_contained_thresh,
                m.box_contained_score_ratio,
                self.score,  # containers as shown at the operating score, whatever `score` asks
            )
            keep[shown[nested]] = False
        ids = out["labels"][keep].cpu().numpy()
        return Prediction(
            out["boxes"][keep].cpu().numpy(),
            [self.classes[i - 1] for i in ids],
            out["scores"][keep].cpu().numpy(),
            seconds,
            ids,
            polygons,
            None
            if class_scores is None
            else [
                {c: float(v) for c, v in zip(self.classes, row, strict=True) if v > 0}
                for row in class_scores[keep].cpu().numpy()
            ],
        )

    def _verified(self, x: torch.Tensor, out: dict, floor: float) -> dict:
        """Each box's score times the verifier's lens probability for its crop, best first.
        Only boxes at `floor` or above are looked at: a product never rises above it."""
        look = torch.where(out["scores"] >= floor)[0]
        scores = torch.zeros_like(out["scores"])
        lens, kinds = self.verifier.look(x, out["boxes"][look])
        scores[look] = out["scores"][look] * lens.to(scores.dtype)
        order = torch.argsort(scores, descending=True)
        if kinds is not None:  # the class probe's reading, for the boxes it looked at
            shares = scores.new_zeros(len(scores), kinds.shape[1])
            shares[look] = kinds.to(scores.dtype)
            out = out | {"class_shares": shares}
        return {k: v[order] for k, v in out.items()} | {"scores": scores[order]}


def merged_classes(out: dict, num_classes: int, iou: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One object, one box: which boxes stay when boxes of different classes overlapping at `iou`
    or more are one object (the better-scoring box stays, as class-agnostic NMS keeps it), and
    each box's score for every class (N, C): a kept box also carries the best score of each other
    class among the boxes it stands for, so a camera also boxed as a phone is one box labelled as
    the likelier, with both scores."""
    boxes, scores, labels = out["boxes"].float(), out["scores"].float(), out["labels"]
    n = len(boxes)
    per_class = scores.new_zeros(n, num_classes)
    per_class[torch.arange(n), labels - 1] = scores
    best = torch.zeros(n, dtype=torch.bool, device=boxes.device)
    if n == 0:
        return best, per_class
    kept = nms(boxes, scores, iou)
    best[kept] = True
    # (K, N): the scores it stands for, of the boxes it would suppress (none above its own: a
    # higher box NMS dropped for a third box is that box's, not this one's)
    covered = ((box_iou(boxes[kept], boxes) >= iou) & (scores[None] <= scores[kept, None])).float() * scores[None]
    for c in range(num_classes):
        of_class = labels == c + 1
        if of_class.any():
            per_class[kept, c] = covered[:, of_class].max(1).values
    return best, per_class


def parts_merged(
    out: dict, keep: torch.Tensor, class_scores: torch.Tensor, inside: float, floor: float
) -> torch.Tensor:
    """`keep` without the boxes lying >= `inside` within a larger, better-scoring box of another
    class (containers_of_other_class, among the kept boxes, both at the operating score `floor`), each
    container taking the dropped boxes' class scores where higher (in place) so that a camera
    whose screen was also boxed as a phone is one camera box with the phone's score too."""
    shown = torch.where(keep)[0]
    holder = containers_of_other_class(out["boxes"][shown], out["scores"][shown], out["labels"][shown], inside, floor)
    keep, holder = keep.clone(), holder.tolist()
    for part in (i for i, h in enumerate(holder) if h >= 0):
        whole = holder[part]
        while holder[whole] >= 0:  # a lens inside a screen inside a camera: the camera
            whole = holder[whole]
        class_scores[shown[whole]] = torch.maximum(class_scores[shown[whole]], class_scores[shown[part]])
        keep[shown[part]] = False
    return keep


def reclassified(class_scores: torch.Tensor, shares: torch.Tensor, weight: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each box's class scores (N, C) and label with the verifier's reading of which class its
    crop shows counted in (the classification half of Decoupled Classification Refinement): the
    box's best score stays its score, given to the class it most likely shows by the detector's
    relative class scores and the verifier's class shares, mixed `weight` to the verifier; each
    other class gets that score times its own mixed share relative to the best."""
    best = class_scores.max(1, keepdim=True).values
    detector = class_scores / best.clamp(min=1e-12)
    verifier = shares / shares.max(1, keepdim=True).values.clamp(min=1e-12)
    mixed = (1 - weight) * detector + weight * verifier
    mixed = mixed / mixed.max(1, keepdim=True).values.clamp(min=1e-12)
    return best * mixed, mixed.argmax(1) + 1


def text_polygons(out: dict, keep: torch.Tensor, nms_thresh: float) -> tuple[torch.Tensor, list[np.ndarray]]:
    """Outlines from the point pairs, then polygon NMS (shapely IoU) in score order."""
    idx = torch.where(keep)[0].tolist()  # already in descending score order
    pairs = out["keypoints"].unflatten(1, (-1, 2)).cpu().numpy()
    counts = out["num_pairs"].cpu().numpy()
    chosen, polys, shapes = [], [], []
    for i in idx:
        poly = pairs_to_polygon(pairs[i, : counts[i]])
        shape = Polygon(poly).buffer(0)
        if any(shape.intersection(o).area / max(shape.union(o).area, 1e-9) > nms_thresh for o in shapes):
            continue
        chosen.append(i)
        polys.append(poly)
        shapes.append(shape)
    mask = torch.zeros_like(keep)
    mask[chosen] = True
    return mask, polys
