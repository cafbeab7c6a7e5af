"""Inference speed-up: fold frozen batch norms into the convolutions before them.

A FrozenBatchNorm2d (or an eval-mode BatchNorm2d) after a convolution is an affine map per
channel; merged into the convolution's weights and bias it costs nothing at run time. The
outputs stay the same up to float rounding. Only for inference: the folded model has no
batch-norm layers left to train.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

NORMS = (FrozenBatchNorm2d, nn.BatchNorm2d)


@torch.no_grad()
def _fold(conv: nn.Conv2d, bn: nn.Module) -> nn.Conv2d:
    scale = bn.weight * (bn.running_var + bn.eps).rsqrt()
    fused = type(conv)(  # the same class: a Conv2dSame keeps TensorFlow's padding
        conv.in_channels,
        conv.out_channels,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        conv.dilation,
        conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(conv.weight.device, conv.weight.dtype)
    fused.weight.copy_(conv.weight * scale.reshape(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def fold_batch_norms(module: nn.Module) -> int:
    """Fold every norm that directly follows a Conv2d inside an nn.Sequential; returns the count."""
    count = 0
    for child in module.children():
        count += fold_batch_norms(child)
    if isinstance(module, nn.Sequential):
        names = list(module._modules)
        for a, b in zip(names, names[1:], strict=False):
            conv, bn = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, NORMS) and not getattr(bn, "training", False):
                module._modules[a] = _fold(conv, bn)
                module._modules[b] = nn.Identity()
                count += 1
    return count
