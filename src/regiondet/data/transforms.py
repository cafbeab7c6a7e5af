"""Train-time augmentation on torchvision.transforms.v2: boxes move with the pixels.

Resizing is not here: torchvision's GeneralizedRCNNTransform resizes inside the model,
so training, evaluation and deployment see the same scaling.
"""

from __future__ import annotations

from typing import Any

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._transform import _RandomApplyTransform


class RandomRot90(_RandomApplyTransform):
    """With probability p, turn the image by 90, 180 or 270 degrees (the thesis's rotation)."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"angle": 90.0 * int(torch.randint(1, 4, ()).item())}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.rotate, inpt, angle=params["angle"], expand=True)


def train_augment(hflip: float, vflip: float, rot90: float, photometric: float = 0.0) -> v2.Compose:
    """Flips and quarter turns, each applied with its own probability, and colour distortion
    (SSD's brightness, contrast, saturation, hue and channel order, each with probability
    `photometric`) so a model trained on photos also holds up on webcam frames."""
    steps: list[v2.Transform] = []
    if photometric > 0:
        steps.append(v2.RandomPhotometricDistort(p=photometric))
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    if vflip > 0:
        steps.append(v2.RandomVerticalFlip(vflip))
    if rot90 > 0:
        steps.append(RandomRot90(rot90))
    steps.append(v2.SanitizeBoundingBoxes(labels_getter=lambda sample: sample[1]["labels"]))
    return v2.Compose(steps)
