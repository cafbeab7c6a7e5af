"""Image sizes for torchvision's detection transform: scale jitter, and test sizes of their own.

torchvision resizes every image so its shorter side is min_size unless its longer side would
pass max_size. With a list of min sizes it picks one per training image but keeps one
max_size, so wide images, capped by max_size, get no jitter at all; here the cap scales with
the picked size, so every image is jittered. Text detectors also train on crops at their own
scale and test on whole images at a larger one (small words need the pixels).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform


def test_sizes(cfg) -> tuple[int, int]:
    """(shorter side, cap on the longer side) at inference, for a ModelConfig: the test sizes
    when set, else the last training size and max_size."""
    sizes = cfg.min_size if isinstance(cfg.min_size, list) else [cfg.min_size]
    return cfg.test_min_size or sizes[-1], cfg.test_max_size or cfg.max_size


def scale_of(size: tuple[int, int], height: int, width: int) -> float:
    """The factor torchvision's resize applies to a height x width image at (shorter side, cap)."""
    return min(size[0] / min(height, width), size[1] / max(height, width))


class SizeTransform(GeneralizedRCNNTransform):
    """GeneralizedRCNNTransform with proportional scale jitter in training and its own test sizes.

    Training: a random min_size s per image, and the cap max_size * s / max(min_size), so
    max_size is the cap at the largest size. Eval: (test_min_size, test_max_size).
    """

    test_min_size: int
    test_max_size: int

    @classmethod
    def from_transform(cls, t: GeneralizedRCNNTransform, test_min: int, test_max: int) -> SizeTransform:
        new = cls.__new__(cls)
        new.__dict__.update(t.__dict__)
        new.test_min_size, new.test_max_size = int(test_min), int(test_max)
        return new

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None):
        if self.training and len(self.min_size) == 1:
            return super().resize(image, target)
        sizes = self.min_size, self.max_size
        if self.training:
            s = self.min_size[int(torch.randint(len(self.min_size), ()).item())]
            self.min_size, self.max_size = (s,), round(self.max_size * s / max(self.min_size))
        else:
            self.min_size, self.max_size = (self.test_min_size,), self.test_max_size
        try:
            return super().resize(image, target)
        finally:
            self.min_size, self.max_size = sizes
