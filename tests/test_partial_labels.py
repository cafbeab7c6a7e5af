"""Sources that label only some classes: taught and scored only for what they label."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import CAMERA_VALID, DATA, main, tiny_config, write_config
from regiondet.config import ModelConfig
from regiondet.data.dataset import ClassMapper, DetectionDataset
from regiondet.data.spec import load_spec, parse_spec
from regiondet.errors import UserError
from regiondet.evaluation.detection import labelled_only, lens_ap
from regiondet.models.faster_rcnn import build_model
from regiondet.models.partial_labels import PartialLabelRoIHeads, partial_label_loss

CELLPHONE = DATA / "phone-photos" / "cellphone" / "data.yaml"
CLASSES = ["camera", "phone"]
MAP = {"mobile-phone": "phone"}


def test_loss_is_cross_entropy_when_every_class_is_labelled():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 0, 1])
    none = torch.zeros(6, 3, dtype=torch.bool)
    assert torch.allclose(partial_label_loss(logits, labels, none), F.cross_entropy(logits, labels))


def test_background_roi_of_a_phone_only_source_is_not_taught_camera_is_background():
    """A RoI on an unboxed camera in a phone photo: plain cross-entropy pushes 'camera' down,
    the partial-label loss never does, and still teaches the labelled class (phone) away."""
    logits = torch.tensor([[0.0, 3.0, 0.5]], requires_grad=True)  # looks like a camera
    labels = torch.tensor([0])
    unlabelled = torch.tensor([[False, True, False]])  # the source boxes phones only
    partial_label_loss(logits, labels, unlabelled).backward()
    assert logits.grad[0, 1] <= 0 and logits.grad[0, 2] > 0
    plain = logits.detach().clone().requires_grad_(True)
    F.cross_entropy(plain, labels).backward()
    assert plain.grad[0, 1] > 0.5  # what the rule prevents
    assert partial_label_loss(logits, labels, unlabelled) < F.cross_entropy(logits, labels) / 10


def test_spec_labels_option_reaches_the_training_targets():
    spec = f"yolo:{CELLPHONE}:valid?labels=phone&limit=3"
    assert parse_spec(spec).labels == ("phone",)
    assert "labels=phone" in parse_spec(spec).text
    samples = ClassMapper(CLASSES, MAP).apply_all(load_spec(spec))
    assert all(s.labelled == ("phone",) and s.labels_class("phone") and not s.labels_class("camera") for s in samples)
    _, target = DetectionDataset(samples, CLASSES)[0]
    assert target["unlabelled"].tolist() == [False, True, False]  # background, camera, phone
    full = ClassMapper(CLASSES).apply_all(load_spec(f"voc:{CAMERA_VALID}?limit=2"))
    assert "unlabelled" not in DetectionDataset(full, CLASSES)[0][1]


def test_labels_option_naming_a_class_the_model_lacks_is_one_clear_error():
    samples = load_spec(f"yolo:{CELLPHONE}:valid?labels=telephone&limit=1")
    with pytest.raises(UserError, match="telephone"):
        ClassMapper(CLASSES, MAP).apply_all(samples)


def test_model_uses_the_partial_loss_only_where_a_class_is_unlabelled():
    torch.manual_seed(0)
    cfg = ModelConfig(
        backbone="mobilenet_v2_fpn",
        classes=CLASSES,
        min_size=128,
        max_size=128,
        representation_size=32,
        box_batch_size_per_image=16,
        rpn_post_nms_top_n_train=40,
    )
    model = build_model(cfg).train()
    assert isinstance(model.roi_heads, PartialLabelRoIHeads)
    images = [torch.rand(3, 128, 128), torch.rand(3, 128, 128)]

    def loss(flags):
        torch.manual_seed(1)
        t = [
            {"boxes": torch.tensor([[10.0, 20.0, 90.0, 100.0]]), "labels": torch.tensor([2])},
            {"boxes": torch.tensor([[30.0, 30.0, 70.0, 90.0]]), "labels": torch.tensor([1])},
        ]
        if flags is not None:
            t[0]["unlabelled"] = torch.tensor(flags)
        return model(images, t)["loss_classifier"].item()

    plain, all_labelled, phone_only = loss(None), loss([False, False, False]), loss([False, True, False])
    assert plain == pytest.approx(all_labelled, rel=1e-5)
    assert phone_only < plain


def test_evaluation_scores_only_the_classes_a_source_labels():
    samples = ClassMapper(CLASSES, MAP).apply_all(load_spec(f"yolo:{CELLPHONE}:valid?labels=phone&limit=2"))
    s = samples[0]
    preds = [
        {
            "boxes": np.concatenate([s.boxes, [[0, 0, 5, 5]]]).astype(np.float32),
            "scores": np.array([0.9] * len(s.boxes) + [0.8], np.float32),
            "labels": np.array([2] * len(s.boxes) + [1]),
        }
    ]  # its phones, and a "camera"
    kept = labelled_only(samples[:1], preds, CLASSES)[0]
    assert kept["labels"].tolist() == [2] * len(s.boxes)
    assert lens_ap(samples[:1], preds).ap == pytest.approx(1.0)  # the extra box ranks last


def test_lens_ap_counts_a_camera_boxed_as_both_classes_once():
    """Two camera photos: the first's cameras boxed as camera (0.9) and again as phone (0.8), the
    second's as camera (0.7). One class would have one box per camera, so every box found is
    right (AP 1.0); counting the phone copies as false lenses would rank them above the second
    photo's cameras. Boxes of two classes that barely overlap both stay."""
    samples = [s for s in load_spec(f"voc:{CAMERA_VALID}?labels=camera") if len(s.boxes)][:2]
    first, second = samples
    n, m = len(first.boxes), len(second.boxes)
    preds = [
        {
            "boxes": np.concatenate([first.boxes, first.boxes + 1]).astype(np.float32),
            "scores": np.array([0.9] * n + [0.8] * n, np.float32),
            "labels": np.array([1] * n + [2] * n),
        },
        {"boxes": second.boxes.astype(np.float32), "scores": np.full(m, 0.7, np.float32), "labels": np.ones(m, int)},
    ]
    assert lens_ap(samples, preds).ap == pytest.approx(1.0)
    far = first.boxes + np.array([1000, 1000, 1000, 1000])  # a phone box nowhere near the camera
    preds[0]["boxes"] = np.concatenate([first.boxes, far]).astype(np.float32)
    assert lens_ap(samples, preds).ap < 0.99


def test_training_on_partly_labelled_sources_runs_through_the_cli(tmp_path):
    cfg = tiny_config(tmp_path / "out", epochs=1, steps_per_epoch=3)
    cfg["model"]["classes"] = CLASSES
    cfg["data"]["train"] = [
        f"voc:{DATA / 'openimages-camera' / 'train'}?labels=camera&limit=4",
        f"yolo:{CELLPHONE}:train?labels=phone&limit=4",
    ]
    cfg["data"]["val"] = [f"yolo:{CELLPHONE}:valid?labels=phone&limit=3"]
    cfg["data"]["class_map"] = MAP
    assert main(["--quiet", "train", str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    assert (tmp_path / "out" / "best.pt").is_file()
