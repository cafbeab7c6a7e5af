"""Train-time augmentation on torchvision.transforms.v2: boxes move with the pixels.

Resizing is not here: torchvision's GeneralizedRCNNTransform resizes inside the model,
so training, evaluation and deployment see the same scaling.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._transform import _RandomApplyTransform


class RandomRot90(_RandomApplyTransform):
    """With probability p, turn the image by 90, 180 or 270 degrees (the thesis's rotation)."""

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        return {"angle": 90.0 * int(torch.randint(1, 4, ()).item())}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.rotate, inpt, angle=params["angle"], expand=True)


class RandomBoxCrop(v2.Transform):
    """With probability p, SSD's crop (torchvision's RandomIoUCrop: a patch that overlaps some
    box by a drawn minimum IoU; boxes whose centre leaves it are dropped). Images without boxes
    (negatives) pass unchanged: there is no box to keep in view."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p
        self.crop = v2.RandomIoUCrop()

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        target = sample[1] if isinstance(sample, tuple | list) and len(sample) > 1 else None
        has_boxes = isinstance(target, dict) and len(target.get("boxes", ())) > 0
        if not has_boxes or torch.rand(()) >= self.p:
            return sample
        return self.crop(sample)


class RandomNegativeCrop(v2.Transform):
    """With probability p, an image without boxes (a negative) is cut to a random window of
    `scale` of its area, so its walls, doors and signs are also seen large, as a webcam sees
    them close up; images with boxes pass unchanged."""

    def __init__(self, p: float, scale: tuple[float, float] = (0.15, 0.8)):
        super().__init__()
        self.p, self.scale = p, scale

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        image, target = sample[0], sample[1]
        if len(target.get("boxes", ())) > 0 or torch.rand(()) >= self.p:
            return sample
        h, w = image.shape[-2:]
        area = float(torch.empty(()).uniform_(*self.scale)) * h * w
        side = min(int(area**0.5), h, w)
        top = int(torch.randint(0, h - side + 1, ()))
        left = int(torch.randint(0, w - side + 1, ()))
        image = F.crop(image, top, left, side, side)
        boxes = F.crop(target["boxes"], top, left, side, side)
        return image, {**target, "boxes": boxes}


class RandomDegradeNegative(v2.Transform):
    """With probability p, an image without boxes becomes a frame a camera gives when it shows
    nothing to find: noise, a flat frame, a heavy blur, near darkness or over-exposure. A live
    feed meets these (a lens cap, a pocket, a sensor waking up) and must not box them."""

    KINDS = ("noise", "grain", "flat", "blur", "dark", "bright")

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, *inputs: Any) -> Any:
        sample = inputs if len(inputs) > 1 else inputs[0]
        image, target = sample[0], sample[1]
        if len(target.get("boxes", ())) > 0 or torch.rand(()) >= self.p:
            return sample
        kind = self.KINDS[int(torch.randint(len(self.KINDS), ()))]
        x = image.as_subclass(torch.Tensor).float()
        if kind == "noise":
            x = torch.rand_like(x) * 255
        elif kind == "grain":
            x = x + torch.randn_like(x) * float(torch.empty(()).uniform_(20, 80))
        elif kind == "flat":
            x = torch.full_like(x, float(torch.randint(0, 256, ()))) + torch.randn_like(x) * 3
        elif kind == "blur":
            sigma = float(torch.empty(()).uniform_(0.02, 0.08)) * min(x.shape[-2:])
            x = gaussian_blur(x, sigma)
        elif kind == "dark":
            x = x * float(torch.empty(()).uniform_(0.02, 0.2))
        else:
            x = 255 - (255 - x) * float(torch.empty(()).uniform_(0.02, 0.2))
        return tv_tensors.wrap(x.clamp_(0, 255).round_().to(torch.uint8), like=image), target


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """A (C, H, W) float image blurred as torchvision's gaussian_blur blurs it (a kernel of 3
    sigma each side, reflected border), by OpenCV's separable filter: torchvision convolves with
    the whole 2-D kernel, tens of seconds for a sigma of 50 px on a 720p photo; OpenCV, 0.4 s."""
    size = 2 * math.ceil(3 * sigma) + 1
    hwc = x.permute(1, 2, 0).contiguous().numpy()
    out = cv2.GaussianBlur(hwc, (size, size), sigma, borderType=cv2.BORDER_REFLECT_101)
    return torch.from_numpy(out.reshape(hwc.shape)).permute(2, 0, 1)


# ImageNet mean in 0..255: the border a zoomed-out image gets, as SSD fills it
ZOOM_FILL = (124, 116, 104)


def train_augment(
    hflip: float,
    vflip: float,
    rot90: float,
    photometric: float = 0.0,
    zoom_out: float = 0.0,
    box_crop: float = 0.0,
    negative_crop: float = 0.0,
    degrade: float = 0.0,
) -> v2.Compose:
    """Flips and quarter turns, each applied with its own probability; colour distortion
    (SSD's brightness, contrast, saturation, hue and channel order, each with probability
    `photometric`) so a model trained on photos also holds up on webcam frames; and SSD's
    geometry for small training sets: zoom out (the image placed on a canvas up to 2x its side,
    so objects also appear small) and box-aware crops (so they also appear large and cut);
    for negatives, close-up windows and frames with nothing to find (RandomDegradeNegative)."""
    steps: list[v2.Transform] = []
    if photometric > 0:
        steps.append(v2.RandomPhotometricDistort(p=photometric))
    if zoom_out > 0:
        steps.append(v2.RandomZoomOut(fill=ZOOM_FILL, side_range=(1.0, 2.0), p=zoom_out))
    if box_crop > 0:
        steps.append(RandomBoxCrop(box_crop))
    if negative_crop > 0:
        steps.append(RandomNegativeCrop(negative_crop))
    if degrade > 0:
        steps.append(RandomDegradeNegative(degrade))
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    if vflip > 0:
        steps.append(v2.RandomVerticalFlip(vflip))
    if rot90 > 0:
        steps.append(RandomRot90(rot90))
    steps.append(v2.SanitizeBoundingBoxes(labels_getter=lambda sample: sample[1]["labels"]))
    return v2.Compose(steps)
