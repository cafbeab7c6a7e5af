"""Boxes move with the pixels under flips and quarter turns."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import tv_tensors

from regiondet.data.transforms import RandomRot90, train_augment


def scene():
    img = torch.zeros(3, 60, 100, dtype=torch.uint8)  # H=60, W=100
    img[:, 20:50, 10:30] = 255  # white block = box [10, 20, 30, 50]
    boxes = tv_tensors.BoundingBoxes([[10, 20, 30, 50]], format="XYXY", canvas_size=(60, 100))
    return tv_tensors.Image(img), {"boxes": boxes, "labels": torch.tensor([1])}


def white_extent(img: torch.Tensor) -> list[float]:
    ys, xs = np.nonzero(img[0].numpy() > 0)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


@pytest.mark.parametrize("kind", ["hflip", "vflip", "rot90"])
def test_box_follows_pixels(kind):
    torch.manual_seed(0)
    aug = train_augment(
        hflip=1.0 if kind == "hflip" else 0, vflip=1.0 if kind == "vflip" else 0, rot90=1.0 if kind == "rot90" else 0
    )
    for _ in range(4):  # rot90 draws 90/180/270
        img, tgt = aug(*scene())
        assert tgt["boxes"][0].tolist() == pytest.approx(white_extent(img))
        assert tgt["labels"].tolist() == [1]


def test_quarter_turn_swaps_canvas():
    torch.manual_seed(1)
    shapes = set()
    for _ in range(8):
        img, tgt = RandomRot90(p=1.0)(*scene())
        shapes.add(tuple(img.shape[-2:]))
        assert tuple(tgt["boxes"].canvas_size) == tuple(img.shape[-2:])
    assert shapes == {(100, 60), (60, 100)}


def test_colour_distortion_changes_pixels_not_boxes():
    torch.manual_seed(0)
    img, tgt = scene()
    img = tv_tensors.Image(torch.randint(0, 256, (3, 60, 100), dtype=torch.uint8))
    changed = 0
    for _ in range(8):
        out, out_tgt = train_augment(0, 0, 0, photometric=1.0)(img, tgt)
        assert out.dtype == torch.uint8 and out.shape == img.shape
        assert torch.equal(out_tgt["boxes"], tgt["boxes"]) and out_tgt["labels"].tolist() == [1]
        changed += not torch.equal(out, img)
    assert changed == 8
    same, _ = train_augment(0, 0, 0, photometric=0.0)(img, tgt)
    assert torch.equal(same, img)


def test_zoom_out_and_box_crop_keep_boxes_on_their_pixels():
    torch.manual_seed(0)
    aug = train_augment(0, 0, 0, zoom_out=1.0, box_crop=1.0)
    shapes = set()
    for _ in range(12):
        img, tgt = aug(*scene())
        shapes.add(tuple(img.shape[-2:]))
        if len(tgt["boxes"]):
            # the white block is the only white: its box is where its pixels landed (zoom-out fill is grey)
            assert tgt["boxes"][0].tolist() == pytest.approx(white_extent(img.eq(255).to(torch.uint8)), abs=1)
            assert tgt["labels"].tolist() == [1]
        assert tuple(tgt["boxes"].canvas_size) == tuple(img.shape[-2:])
    assert len(shapes) > 3  # sizes really vary


def test_box_crop_leaves_negatives_alone():
    img = tv_tensors.Image(torch.randint(0, 256, (3, 60, 100), dtype=torch.uint8))
    empty = {
        "boxes": tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(60, 100)),
        "labels": torch.zeros(0, dtype=torch.int64),
    }
    out, tgt = train_augment(0, 0, 0, box_crop=1.0)(img, empty)
    assert torch.equal(out, img) and len(tgt["boxes"]) == 0


def test_negative_crop_cuts_negatives_only():
    torch.manual_seed(0)
    img = tv_tensors.Image(torch.randint(0, 256, (3, 60, 100), dtype=torch.uint8))
    empty = {
        "boxes": tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(60, 100)),
        "labels": torch.zeros(0, dtype=torch.int64),
    }
    aug = train_augment(0, 0, 0, negative_crop=1.0)
    sides = set()
    for _ in range(6):
        out, tgt = aug(img, empty)
        h, w = out.shape[-2:]
        assert h == w <= 60 and len(tgt["boxes"]) == 0 and tuple(tgt["boxes"].canvas_size) == (h, w)
        sides.add(h)
    assert len(sides) > 1
    same, tgt = aug(*scene())  # an image with a box is left as it was
    assert same.shape == (3, 60, 100) and tgt["boxes"][0].tolist() == [10, 20, 30, 50]
