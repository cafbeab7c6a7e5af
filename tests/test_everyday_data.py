"""Training on everyday scenes: a source's object-free photos as negatives (objects=none),
training objects pasted into real scenes (copy-paste), and frames with nothing to find."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from conftest import DATA, ICDAR
from regiondet.data.dataset import DetectionDataset, load_labelled, load_negatives
from regiondet.data.images import load_rgb
from regiondet.data.paste import READ_SIDE, PasteBank, soft_mask
from regiondet.data.spec import load_spec, parse_spec
from regiondet.data.transforms import RandomDegradeNegative, gaussian_blur
from regiondet.errors import UserError

COCO = DATA / "coco-people" / "data.yaml"


def test_objects_option_splits_a_source_into_photos_with_and_without_boxes():
    every = load_spec(f"yolo:{COCO}:valid")
    some = load_spec(f"yolo:{COCO}:valid?objects=some")
    none = load_spec(f"yolo:{COCO}:valid?objects=none")
    assert len(some) + len(none) == len(every)
    assert some and all(len(s.boxes) for s in some)
    assert none and not any(len(s.boxes) for s in none)
    assert parse_spec(f"yolo:{COCO}:valid?objects=none").text.endswith("objects=none")
    with pytest.raises(UserError, match="objects must be"):
        load_spec(f"yolo:{COCO}:valid?objects=maybe")


def _bank() -> PasteBank:
    phones = load_labelled([f"yolo:{COCO}:valid?labels=phone&objects=some"], ["camera", "phone"])
    return PasteBank(phones, (12.0, 160.0))


def test_paste_boxes_what_it_pastes_at_the_drawn_sizes_and_leaves_the_rest():
    bank = _bank()
    assert len(bank) >= 5 and {p.label for p in bank.pieces} == {"phone"}
    scene = load_negatives([f"icdar2015:{ICDAR}?limit=3"])[0]
    pixels = load_rgb(scene.path)
    h, w = pixels.shape[:2]
    torch.manual_seed(0)
    for _ in range(5):
        out, pasted = bank(pixels, scene)
        assert out.shape == pixels.shape and out.dtype == np.uint8
        assert 1 <= len(pasted.boxes) <= 3 and pasted.labels == ["phone"] * len(pasted.boxes)
        assert (pasted.width, pasted.height) == (w, h) and pasted.labelled is None
        changed = np.abs(out.astype(int) - pixels.astype(int)).sum(-1) > 0
        inside = np.zeros((h, w), bool)
        for x1, y1, x2, y2 in pasted.boxes.astype(int):
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            longer = max(x2 - x1, y2 - y1) * READ_SIDE / max(h, w)
            assert 11 <= longer <= 161
            inside[y1:y2, x1:x2] = True
            assert changed[y1:y2, x1:x2].mean() > 0.3  # the object is there
        assert not changed[~inside].any()  # nothing outside the boxes moved


def test_soft_mask_is_opaque_inside_and_fades_to_the_edge():
    m = soft_mask(40, 20)
    assert m[20, 10] == 1.0 and m[0, 0] < 0.05 and m[20, 0] < 0.25
    assert (np.diff(m[20, :10]) >= 0).all()  # rises from the edge to the middle


def test_the_dataset_pastes_only_into_fully_labelled_negatives():
    bank = _bank()
    negative = load_negatives([f"icdar2015:{ICDAR}?limit=1"])
    partial = load_labelled([f"yolo:{COCO}:valid?labels=phone&objects=none&limit=1"], ["camera", "phone"])
    ds = DetectionDataset(negative + partial, ["camera", "phone"], paste=bank, paste_p=1.0)
    torch.manual_seed(1)
    _, target = ds[0]
    assert len(target["boxes"]) >= 1 and set(target["labels"].tolist()) == {2}
    _, target = ds[1]  # labels=phone: a camera could be there unboxed, so nothing is pasted
    assert len(target["boxes"]) == 0


def test_degrade_turns_negatives_into_frames_with_nothing_to_find_and_spares_objects():
    scene = load_negatives([f"icdar2015:{ICDAR}?limit=1"])[0]
    pixels = torch.from_numpy(load_rgb(scene.path)).permute(2, 0, 1)
    image = tv_tensors.Image(pixels)
    empty = {
        "boxes": tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=pixels.shape[-2:]),
        "labels": torch.zeros(0, dtype=torch.int64),
    }
    degrade = RandomDegradeNegative(1.0)
    outs = []
    for seed in range(24):
        torch.manual_seed(seed)
        out, _ = degrade(image, empty)
        assert out.shape == image.shape and out.dtype == torch.uint8
        outs.append(out.float())
    assert all((o - pixels.float()).abs().mean() > 5 for o in outs)
    stds = [float(o.std()) for o in outs]
    assert min(stds) < 10 < max(stds)  # flat or dark frames and noisy ones both come up
    boxed = {
        "boxes": tv_tensors.BoundingBoxes(
            torch.tensor([[10.0, 10, 50, 50]]), format="XYXY", canvas_size=pixels.shape[-2:]
        ),
        "labels": torch.tensor([1]),
    }
    out, _ = degrade(image, boxed)
    assert torch.equal(out, image)


def test_the_degrade_blur_is_torchvisions_gaussian_blur():
    """OpenCV's separable filter gives torchvision's 2-D Gaussian (3 sigma each side, reflected
    border) on a real photo, small and large sigma, one channel or three."""
    scene = load_negatives([f"icdar2015:{ICDAR}?limit=1"])[0]
    x = torch.from_numpy(load_rgb(scene.path)).permute(2, 0, 1)[:, :90, :160].float()
    for image in (x, x[:1]):
        for sigma in (0.8, 3.0, 11.0):
            size = 2 * math.ceil(3 * sigma) + 1
            want = F.gaussian_blur(image, [size, size], [sigma, sigma])
            torch.testing.assert_close(gaussian_blur(image, sigma), want, atol=1e-3, rtol=1e-5)
