"""TensorFlow's "SAME" padding for strided convolutions, so TF-trained weights see what they learnt on.

PyTorch pads a 3x3 stride-2 convolution by one pixel on every side; TensorFlow pads only as much
as the output needs, and puts the odd pixel at the right and bottom (none at the top-left on
even sizes). Fed torchvision's padding, TF weights would read a grid shifted by half a pixel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class Conv2dSame(nn.Conv2d):
    """nn.Conv2d whose padding follows TensorFlow's SAME rule for the input at hand."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Python ints, so an ONNX export keeps the pads as constants: the detector's inputs are
        # padded to multiples of 32, where every strided layer sees an even size and the same pads
        sizes = [int(v) for v in x.shape[-2:]]
        pads = []
        for size, k, s, d in zip(sizes, self.kernel_size, self.stride, self.dilation, strict=True):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if torch.onnx.is_in_onnx_export():  # one Conv with its own uneven pads, no Pad before it
            return _SameConv.apply(x, self.weight, self.bias, (top, left, bottom, right), self)
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class _SameConv(torch.autograd.Function):
    """The padded convolution, exported as one ONNX Conv whose `pads` may differ per side (ONNX
    allows it, PyTorch's conv2d does not): exported as pad-then-convolve, ONNX Runtime copied
    each strided layer's input into a padded tensor first (6 % of the detector's time)."""

    @staticmethod
    def forward(
        ctx: object, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, pads: tuple, conv: nn.Conv2d
    ) -> torch.Tensor:
        top, left, bottom, right = pads
        x = F.pad(x, (left, right, top, bottom))
        return F.conv2d(x, weight, bias, conv.stride, 0, conv.dilation, conv.groups)

    @staticmethod
    def symbolic(g: object, x: object, weight: object, bias: object, pads: tuple, conv: nn.Conv2d) -> object:
        inputs = [x, weight] if conv.bias is None else [x, weight, bias]
        return g.op(
            "Conv",
            *inputs,
            kernel_shape_i=list(conv.kernel_size),
            strides_i=list(conv.stride),
            dilations_i=list(conv.dilation),
            group_i=conv.groups,
            pads_i=list(pads),
        )


def use_tf_same_padding(module: nn.Module) -> int:
    """Swap every strided convolution in module for a Conv2dSame with the same parameters.

    Stride-1 convolutions are left alone: for odd kernels, SAME and symmetric padding agree.
    Returns how many were swapped.
    """
    swapped = 0
    for name, child in module.named_children():
        if isinstance(child, nn.Conv2d) and not isinstance(child, Conv2dSame) and max(child.stride) > 1:
            new = Conv2dSame(
                child.in_channels,
                child.out_channels,
                child.kernel_size,
                child.stride,
                0,
                child.dilation,
                child.groups,
                child.bias is not None,
            )
            new.load_state_dict(child.state_dict())
            new.weight.requires_grad_(child.weight.requires_grad)
            setattr(module, name, new)
            swapped += 1
        else:
            swapped += use_tf_same_padding(child)
    return swapped
