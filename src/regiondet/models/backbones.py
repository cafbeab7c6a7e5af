"""The four backbones of the thesis grid, built from torchvision parts.

Each builder returns a `Trunk`: the feature extractor (with `out_channels`), the names
of the feature maps RoIAlign reads, the RoI output size, and the box head that turns
pooled features into a vector (plus its width).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.detection.backbone_utils import mobilenet_backbone
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops import FrozenBatchNorm2d

from regiondet.config import ModelConfig
from regiondet.errors import UserError
from regiondet.models.weights import (
    IMAGENET,
    deepsort_weights_path,
    load_by_position,
    load_state_dict_file,
    torchvision_state_dict,
)

State = dict[str, torch.Tensor] | None


@dataclass
class Trunk:
    body: nn.Module
    featmap_names: list[str]
    roi_output_size: int
    box_head: nn.Module
    head_width: int
    num_feature_maps: int


def _source_state(cfg: ModelConfig) -> tuple[dict[str, torch.Tensor] | None, str]:
    """The classification-style state dict named by cfg.weights (None for 'none')."""
    w = cfg.weights
    if w in ("none", "", None):
        return None, "none"
    if w == "deepsort":
        if cfg.backbone != "mobilenet_v2_fpn":
            raise UserError("weights 'deepsort' hold MobileNetV2 features: use backbone mobilenet_v2_fpn")
        path = deepsort_weights_path()
        return load_state_dict_file(path), str(path)
    if w == "imagenet":
        return torchvision_state_dict(IMAGENET[cfg.backbone]), IMAGENET[cfg.backbone]
    if w.startswith("torchvision:"):
        return torchvision_state_dict(w.split(":", 1)[1]), w
    return load_state_dict_file(Path(w)), w


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """Tensors under prefix (e.g. 'features.'), prefix removed; all tensors if none match."""
    sub = OrderedDict((k[len(prefix) :], v) for k, v in state.items() if k.startswith(prefix))
    return sub or state


def _freeze(modules: list[nn.Module], trainable: int) -> None:
    """Keep only the last `trainable` stages trainable."""
    for m in modules[: max(0, len(modules) - trainable)]:
        for p in m.parameters():
            p.requires_grad_(False)


def vgg16_trunk(cfg: ModelConfig, state: State, source: str, frozen_bn: bool) -> Trunk:
    """Thesis Model 1: VGG16 conv1_1..conv5_3 (stride 16) and an fc6/fc7 head."""
    features = torchvision.models.vgg16().features[:30]
    if state is not None:
        load_by_position(features, _strip(state, "features."), source)
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    bounds = [0, *[p + 1 for p in pools], len(features)]
    stages = [features[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    _freeze(stages, cfg.trainable_layers)
    features.out_channels = 512
    s = cfg.roi_output_size
    head = TwoMLPHead(512 * s * s, cfg.representation_size)
    return Trunk(features, ["0"], s, head, cfg.representation_size, 1)


class _ResNetC5Head(nn.Module):
    """Thesis Model 2's RoI head: ResNet stage 5 on 14x14 RoIs, then global average pooling."""

    def __init__(self, layer4: nn.Module):
        super().__init__()
        self.layer4 = layer4
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.layer4(x)).flatten(1)


def resnet50_c4_trunk(cfg: ModelConfig, state: State, source: str, frozen_bn: bool) -> Trunk:
    """Thesis Model 2: ResNet50 stages 1-4 as base (stride 16), stage 5 in the RoI head."""
    norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    net = torchvision.models.resnet50(norm_layer=norm)
    if state is not None:
        missing, _ = net.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")}, strict=False)
        if missing:
            load_by_position(nn.Sequential(*list(net.children())[:-1]), state, source)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    body = nn.Sequential(OrderedDict(stem=stem, layer1=net.layer1, layer2=net.layer2, layer3=net.layer3))
    _freeze([stem, net.layer1, net.layer2, net.layer3, net.layer4], cfg.trainable_layers)
    body.out_channels = 1024
    return Trunk(body, ["0"], 2 * cfg.roi_output_size, _ResNetC5Head(net.layer4), 2048, 1)


def mobilenet_fpn_trunk(cfg: ModelConfig, state: State, source: str, frozen_bn: bool) -> Trunk:
    """MobileNetV2 / V3-Large features with a 256-channel FPN on the last two stages."""
    name = "mobilenet_v2" if cfg.backbone == "mobilenet_v2_fpn" else "mobilenet_v3_large"
    norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    fpn = mobilenet_backbone(
        backbone_name=name,
        weights=None,
        fpn=True,
        norm_layer=norm,
        trainable_layers=cfg.trainable_layers,
    )
    if state is not None:
        load_by_position(fpn.body, _strip(state, "features."), source)
    s = cfg.roi_output_size
    head = TwoMLPHead(fpn.out_channels * s * s, cfg.representation_size)
    return Trunk(fpn, ["0", "1"], s, head, cfg.representation_size, 3)


BUILDERS = {
    "vgg16": vgg16_trunk,
    "resnet50_c4": resnet50_c4_trunk,
    "mobilenet_v2_fpn": mobilenet_fpn_trunk,
    "mobilenet_v3_fpn": mobilenet_fpn_trunk,
}


def build_trunk(cfg: ModelConfig, load_weights: bool = True) -> Trunk:
    """Build the backbone named in cfg, loading cfg.weights unless load_weights is False.

    Batch norm is frozen whenever pretrained weights are configured, so a model rebuilt
    from a checkpoint (load_weights=False) has exactly the trained architecture.
    """
    frozen_bn = cfg.weights not in ("none", "", None)
    state, source = _source_state(cfg) if load_weights else (None, "none")
    return BUILDERS[cfg.backbone](cfg, state, source, frozen_bn)
