"""The thesis grid's backbones and the text model's, built from torchvision parts.

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
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from regiondet.config import BACKBONES, ModelConfig
from regiondet.errors import UserError
from regiondet.models.craft import CraftDecoder, CraftFPN, load_craft_state
from regiondet.models.se_vgg import SEVGG16, craft_state, load_craft_trunk, vgg16_features
from regiondet.models.tf_same import use_tf_same_padding
from regiondet.models.weights import (
    COCO_SSD_BN_EPS,
    build_lite0,
    coco_ssd_state,
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
    if w == "craft":
        if cfg.backbone not in ("se_vgg16", "vgg16", "vgg16_fpn", "craft_fpn"):
            raise UserError(
                "weights 'craft' hold a VGG16-BN text detector: use backbone craft_fpn, vgg16, vgg16_fpn or se_vgg16"
            )
        return {}, "craft"
    if w == "deepsort":
        if cfg.backbone != "mobilenet_v2_fpn":
            raise UserError("weights 'deepsort' hold MobileNetV2 features: use backbone mobilenet_v2_fpn")
        path = deepsort_weights_path()
        return load_state_dict_file(path), str(path)
    if w == "coco-ssd":
        if cfg.backbone != "mobilenet_v2_fpn":
            raise UserError("weights 'coco-ssd' hold MobileNetV2 features: use backbone mobilenet_v2_fpn")
        tensors, path = coco_ssd_state()
        return OrderedDict((str(i), t) for i, t in enumerate(tensors)), path
    if w == "lite0" or (w == "imagenet" and cfg.backbone == "efficientnet_lite0_fpn"):
        if cfg.backbone != "efficientnet_lite0_fpn":
            raise UserError("weights 'lite0' hold EfficientNet-Lite0 features: use backbone efficientnet_lite0_fpn")
        return {}, "lite0"
    if w == "imagenet":
        return torchvision_state_dict(BACKBONES[cfg.backbone]), BACKBONES[cfg.backbone]
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
    """Thesis Model 1: VGG16 conv1_1..conv5_3 (stride 16) and an fc6/fc7 head.

    With weights 'craft' it is the VGG16-BN variant holding CRAFT's text-trained trunk, the
    only pretrained VGG16 that loads offline here; its batch norms stay frozen.
    """
    craft = cfg.weights == "craft"
    features = vgg16_features(batch_norm=craft, frozen_bn=craft)
    if state is not None:
        if craft:
            load_craft_trunk(features)
        else:
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


def _stride_ends(features: nn.Sequential) -> tuple[dict[int, int], dict[int, int]]:
    """For each output stride of a feature stack: its last block index and channel count."""
    ends, channels = {}, {}
    x = torch.zeros(1, 3, 64, 64)
    with torch.no_grad():
        for i, block in enumerate(features):
            x = block(x)
            stride = 64 // x.shape[-1]
            ends[stride], channels[stride] = i, x.shape[1]
    return ends, channels


def lite0_features(load: bool, frozen_bn: bool) -> nn.Sequential:
    """EfficientNet-Lite0 as one stack of blocks (stem, its seven stages, the 1x1 head conv to
    1280 channels), as torchvision's MobileNetV2 `features` is: an FPN taps the stage ends."""
    from timm.layers import freeze_batch_norm_2d  # here: only Lite0 models need timm

    net = build_lite0(load=load)
    features = nn.Sequential(nn.Sequential(net.conv_stem, net.bn1), *net.blocks, nn.Sequential(net.conv_head, net.bn2))
    return freeze_batch_norm_2d(features) if frozen_bn else features


def _fpn_features(cfg: ModelConfig, state: State, source: str, frozen_bn: bool) -> nn.Sequential:
    """The feature stack an FPN trunk taps, with cfg.weights loaded into it."""
    if cfg.backbone == "efficientnet_lite0_fpn":
        if state:
            raise UserError(f"backbone efficientnet_lite0_fpn starts from 'lite0' or 'none', not {source}")
        return lite0_features(state is not None, frozen_bn)
    if cfg.backbone == "vgg16_fpn":
        features = vgg16_features(batch_norm=True, frozen_bn=frozen_bn)
        if cfg.weights == "craft" and state is not None:
            load_craft_trunk(features)
            return features
    else:
        name = "mobilenet_v2" if cfg.backbone == "mobilenet_v2_fpn" else "mobilenet_v3_large"
        net = torchvision.models.__dict__[name]
        norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        features = net(norm_layer=norm).features
    if tensorflow_rules(cfg):  # TensorFlow-trained: its padding and batch-norm epsilon, always
        use_tf_same_padding(features)
        for m in features.modules():
            if isinstance(m, (nn.BatchNorm2d, FrozenBatchNorm2d)):
                m.eps = COCO_SSD_BN_EPS
    if state is not None:
        load_by_position(features, _strip(state, "features."), source)
    return features


def tensorflow_rules(cfg: ModelConfig) -> bool:
    """Whether the trunk pads and normalises as TensorFlow (SAME padding, batch-norm eps 1e-3):
    set by the weights it was made for (`coco-ssd`), not by the tensors loaded into it."""
    return cfg.weights == "coco-ssd" and cfg.backbone in ("mobilenet_v2_fpn", "mobilenet_v3_fpn", "vgg16_fpn")


def trunk_rules(cfg: ModelConfig) -> str:
    """The trunk's padding rules in words: fine-tuning a checkpoint under other rules shifts every
    feature map."""
    return "TensorFlow padding (model.weights: coco-ssd)" if tensorflow_rules(cfg) else "PyTorch padding"


def fpn_trunk(cfg: ModelConfig, state: State, source: str, frozen_bn: bool) -> Trunk:
    """MobileNetV2 / V3-Large or VGG16-BN features with a 256-channel FPN on the ends of the
    cfg.fpn_strides stages, plus a pooled level.

    torchvision's mobilenet FPN taps the first block of the last two stages, both at
    stride 32 (13x13 cells on a 416 px image); ending each stage at its own stride keeps
    a stride-16 map, as the thesis's VGG16 has, for small cameras. VGG16 (stride 16, as
    CRAFT's text-trained trunk) taps conv3_3 / conv4_3 / conv5_3 at strides 4 / 8 / 16, the
    maps CRAFT itself upsamples, so small words get a fine map.
    """
    features = _fpn_features(cfg, state, source, frozen_bn)
    ends, channels = _stride_ends(features.eval())
    bad = [s for s in cfg.fpn_strides if s not in ends]
    if bad:
        raise UserError(f"model.fpn_strides {bad} not available; choose from {sorted(ends)}")
    strides = sorted(cfg.fpn_strides)
    starts = sorted({0, *[ends[s] + 1 for s in sorted(ends)[:-1]]})
    stages = [features[a:b] for a, b in zip(starts, [*starts[1:], len(features)], strict=True)]
    _freeze(stages, cfg.trainable_layers)
    fpn = BackboneWithFPN(
        features,
        {str(ends[s]): str(k) for k, s in enumerate(strides)},
        [channels[s] for s in strides],
        256,
        extra_blocks=LastLevelMaxPool(),
    )
    s = cfg.roi_output_size
    head = TwoMLPHead(fpn.out_channels * s * s, cfg.representation_size)
    return Trunk(fpn, [str(k) for k in range(len(strides))], s, head, cfg.representation_size, len(strides) + 1)


def craft_fpn_trunk(cfg: ModelConfig, state: State, source: str, frozen_bn: bool) -> Trunk:
    """The whole CRAFT text detector minus its score head, with an FPN on the decoder maps at
    cfg.fpn_strides (from 2, 4, 8, 16) plus a pooled level.

    Weights: 'craft' (offline), a CRAFT or regiondet craft_fpn checkpoint file (by name), or
    VGG16-BN classification weights ('imagenet', a file), which fill the trunk only.
    """
    decoder = CraftDecoder(cfg.fpn_strides, frozen_bn)
    if state:
        state = _strip(state, "backbone.body.")  # a regiondet craft_fpn checkpoint: by name
    if cfg.weights == "craft" and state is not None:
        craft, path = craft_state()
        load_craft_state(decoder, craft, str(path))
    elif state is not None and any(k.removeprefix("module.").startswith("upconv1.") for k in state):
        load_craft_state(decoder, state, source)
    elif state is not None:
        b = decoder.basenet
        load_by_position(nn.ModuleList([b.slice1, b.slice2, b.slice3, b.slice4]), _strip(state, "features."), source)
    _freeze(decoder.stages(), cfg.trainable_layers)
    fpn = CraftFPN(decoder)
    s = cfg.roi_output_size
    head = TwoMLPHead(fpn.out_channels * s * s, cfg.representation_size)
    n = len(decoder.strides)
    return Trunk(fpn, [str(k) for k in range(n)], s, head, cfg.representation_size, n + 1)


def se_vgg16_trunk(cfg: ModelConfig, state: State, source: str, frozen_bn: bool) -> Trunk:
    """ATRR's SE-VGG16 (VGG16-BN + SE blocks, stride 16) with an fc6/fc7 head."""
    body = SEVGG16(batch_norm=True, frozen_bn=frozen_bn)
    if cfg.weights == "craft" and state is not None:
        load_craft_trunk(body.features)
    elif state is not None:
        body.features.load_state_dict(
            {k: v for k, v in _strip(state, "features.").items() if k in body.features.state_dict()}, strict=False
        )
    _freeze(body.stages(), cfg.trainable_layers)
    s = cfg.roi_output_size
    head = TwoMLPHead(512 * s * s, cfg.representation_size)
    return Trunk(body, ["0"], s, head, cfg.representation_size, 1)


BUILDERS = {
    "vgg16": vgg16_trunk,
    "resnet50_c4": resnet50_c4_trunk,
    "mobilenet_v2_fpn": fpn_trunk,
    "mobilenet_v3_fpn": fpn_trunk,
    "vgg16_fpn": fpn_trunk,
    "craft_fpn": craft_fpn_trunk,
    "se_vgg16": se_vgg16_trunk,
    "efficientnet_lite0_fpn": fpn_trunk,
}


assert set(BUILDERS) == set(BACKBONES), "config.BACKBONES and BUILDERS name the same backbones"


def build_trunk(cfg: ModelConfig, load_weights: bool = True) -> Trunk:
    """Build the backbone named in cfg, loading cfg.weights unless load_weights is False.

    Batch norm is frozen whenever pretrained weights are configured, so a model rebuilt
    from a checkpoint (load_weights=False) has exactly the trained architecture.
    """
    frozen_bn = cfg.weights not in ("none", "", None)
    state, source = _source_state(cfg) if load_weights else (None, "none")
    return BUILDERS[cfg.backbone](cfg, state, source, frozen_bn)
