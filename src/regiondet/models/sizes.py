"""Separate training and test image sizes for torchvision's detection transform.

Text detectors train on crops at their own scale and test on whole images at a larger
one (small words need the pixels); torchvision's transform has one size for both.
"""

from __future__ import annotations

from torch import Tensor
from torchvision.models.detection.transform import GeneralizedRCNNTransform


class TestSizeTransform(GeneralizedRCNNTransform):
    """GeneralizedRCNNTransform that resizes to (test_min_size, test_max_size) in eval mode."""

    test_min_size: int
    test_max_size: int

    @classmethod
    def from_transform(cls, t: GeneralizedRCNNTransform, test_min: int, test_max: int) -> TestSizeTransform:
        new = cls.__new__(cls)
        new.__dict__.update(t.__dict__)
        new.test_min_size, new.test_max_size = int(test_min), int(test_max)
        return new

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None):
        if self.training:
            return super().resize(image, target)
        sizes = self.min_size, self.max_size
        self.min_size, self.max_size = (self.test_min_size,), self.test_max_size
        try:
            return super().resize(image, target)
        finally:
            self.min_size, self.max_size = sizes
