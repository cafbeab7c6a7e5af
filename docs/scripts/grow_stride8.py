"""Grow a trained MobileNetV2-FPN box model by a stride-8 FPN level and 16 px anchors.

    python docs/scripts/grow_stride8.py default runs/stride8_init.pt [--config CONFIG]

The config (default: configs/camera_phone_everyday_stride8.yaml) builds the grown model. Every
tensor of the source keeps its meaning: the FPN's old levels move up one index; the new level's
1x1 lateral starts at zero and its 3x3 output conv as the stride-16 one, so the stride-8 map
starts as the upsampled stride-16 map the box head already reads; the RPN's outputs for each
old anchor size are copied, and a new smallest size starts as the old smallest. So the grown
model at step 0 detects as the source did, with extra proposals on the finer map, and a
fine-tuning run (`train.init` = the output) starts from a working detector, not from scratch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from regiondet.config import load_config
from regiondet.models.anchors import anchor_generator
from regiondet.models.checkpoint import config_of, read_checkpoint, save_checkpoint
from regiondet.models.faster_rcnn import build_model
from regiondet.models.zoo import resolve_model_path

FPN = "backbone.fpn."


def grow(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor], old_a: int, new_a: int, ratios: int) -> dict:
    """The new state dict filled from the old one (see the module's docstring)."""
    out = {k: v.clone() for k, v in new.items()}
    for k, v in old.items():
        if k.startswith(FPN + "inner_blocks.") or k.startswith(FPN + "layer_blocks."):
            part, idx, rest = k[len(FPN) :].split(".", 2)
            out[f"{FPN}{part}.{int(idx) + 1}.{rest}"] = v.float()
        elif not k.startswith(("rpn.head.cls_logits", "rpn.head.bbox_pred")) and k in out and out[k].shape == v.shape:
            out[k] = v.to(out[k].dtype)
    for k in (FPN + "inner_blocks.0.0.weight", FPN + "inner_blocks.0.0.bias"):
        out[k] = torch.zeros_like(out[k])
    for k in (FPN + "layer_blocks.0.0.weight", FPN + "layer_blocks.0.0.bias"):
        out[k] = old[k].float().clone()
    # torchvision orders a cell's anchors ratio-major: index = ratio * sizes + size
    old_s, new_s, added = old_a // ratios, new_a // ratios, new_a // ratios - old_a // ratios
    for name, per in (("rpn.head.cls_logits", 1), ("rpn.head.bbox_pred", 4)):
        for suffix in (".weight", ".bias"):
            src, dst = old[name + suffix].float(), out[name + suffix]
            for r in range(ratios):
                for s in range(new_s):
                    o = r * old_s + max(s - added, 0)
                    n = r * new_s + s
                    dst[n * per : (n + 1) * per] = src[o * per : (o + 1) * per]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="a shipped model's name or a checkpoint")
    ap.add_argument("out", type=Path)
    ap.add_argument("--config", default="configs/camera_phone_everyday_stride8.yaml")
    args = ap.parse_args()
    path = resolve_model_path(args.source)
    ckpt = read_checkpoint(path)
    old_cfg, cfg = config_of(ckpt, path), load_config(args.config)
    model = build_model(cfg.model, load_weights=False)
    ratios = len(cfg.model.aspect_ratios)
    old_a = anchor_generator(old_cfg.model, 3).num_anchors_per_location()[0]
    new_a = anchor_generator(cfg.model, 4).num_anchors_per_location()[0]
    model.load_state_dict(grow(ckpt["model"], model.state_dict(), old_a, new_a, ratios))
    save_checkpoint(args.out, model, cfg)
    print(f"{args.out}: {path} grown to FPN strides {cfg.model.fpn_strides}, {old_a} -> {new_a} anchors a cell")


if __name__ == "__main__":
    main()
