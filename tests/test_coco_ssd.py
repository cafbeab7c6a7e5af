"""COCO-detection MobileNetV2 features imported from TensorFlow's SSD, checked against OpenCV.

fixtures/coco_ssd_features.npz holds a 160x128 crop of samples/camera_desk.jpg (RGB) and the
graph's `FeatureExtractor/MobilenetV2/Conv_1/Relu6` activations for it, computed by OpenCV 5.0's
TensorFlow importer (`readNetFromTensorflow`, ENGINE_CLASSIC; the script is in the fixture's
README). OpenCV 5.1 dropped that importer; the weights are now read from the graph's protobuf.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import ROOT
from regiondet.config import ModelConfig
from regiondet.errors import UserError
from regiondet.models.faster_rcnn import build_model
from regiondet.models.tf_graph import graph_constants
from regiondet.models.tf_same import Conv2dSame
from regiondet.models.weights import coco_ssd_paths

SMALL = dict(min_size=300, max_size=300, representation_size=64, rpn_post_nms_top_n_test=20)
FIXTURE = ROOT / "tests" / "fixtures" / "coco_ssd_features.npz"


def _trunk_features(model, pixels: np.ndarray) -> np.ndarray:
    body = model.backbone.body
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255
    mean = torch.tensor(model.transform.image_mean)[:, None, None]
    std = torch.tensor(model.transform.image_std)[:, None, None]
    with torch.no_grad():
        return torch.nn.Sequential(*body.values())((x - mean) / std).numpy()


def test_features_equal_opencv_forward_on_a_real_photo():
    """The whole trunk (weights from the protobuf, padding, [-1, 1] inputs, eps 1e-3) gives the
    activations OpenCV's own TensorFlow importer computed for the same pixels."""
    fixture = np.load(FIXTURE)
    pixels, ref = fixture["pixels"], fixture["features"]
    model = build_model(ModelConfig(backbone="mobilenet_v2_fpn", weights="coco-ssd", classes=["camera"], **SMALL))
    ours = _trunk_features(model.eval(), pixels)
    h, w = pixels.shape[:2]
    assert ours.shape == ref.shape == (1, 1280, -(-h // 32), -(-w // 32))
    assert np.abs(ours - ref).max() < 1e-3 * max(1.0, np.abs(ref).max())
    assert np.abs(ref).mean() > 0.01  # a real activation map, not zeros


def test_the_graph_reader_reads_constants_by_name_and_refuses_other_files(tmp_path):
    graph, text = coco_ssd_paths()
    consts = graph_constants(graph, "FeatureExtractor/MobilenetV2/Conv/")
    assert consts["FeatureExtractor/MobilenetV2/Conv/weights"].shape == (3, 3, 3, 32)  # HWIO
    assert consts["FeatureExtractor/MobilenetV2/Conv/BatchNorm/moving_variance"].min() > 0
    for bad in (text, ROOT / "samples" / "camera_desk.jpg"):  # a text graph, a JPEG
        with pytest.raises(UserError, match="not a TensorFlow GraphDef") as e:
            graph_constants(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(UserError, match="not found"):
        graph_constants(tmp_path / "missing.pb")


def test_torchvision_padding_would_not_match():
    """The check above can fail: symmetric padding and eps 1e-5 read the weights wrongly."""
    model = build_model(ModelConfig(backbone="mobilenet_v2_fpn", weights="coco-ssd", classes=["camera"], **SMALL))
    body = model.backbone.body
    swapped = [m for m in body.modules() if isinstance(m, Conv2dSame)]
    assert len(swapped) == 5  # the stem and four stride-2 depthwise convolutions
    pixels = np.load(FIXTURE)["pixels"]
    x = (torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    plain = torch.nn.Sequential(*body.values())
    with torch.no_grad():
        good = plain(x)
        for m in body.modules():
            if isinstance(m, Conv2dSame):
                m.forward = lambda t, m=m: torch.nn.functional.conv2d(t, m.weight, m.bias, m.stride, 1, 1, m.groups)
            if hasattr(m, "eps"):
                m.eps = 1e-5
        bad = plain(x)
    assert (good - bad).abs().max() > 0.1


def test_weights_coco_ssd_need_mobilenet_v2():
    with pytest.raises(Exception, match="MobileNetV2"):
        build_model(ModelConfig(backbone="vgg16", weights="coco-ssd", **SMALL))


def test_a_checkpoint_rebuilds_the_same_architecture():
    """load_weights=False (a checkpoint being read) keeps TF padding, eps and input scaling."""
    cfg = ModelConfig(backbone="mobilenet_v2_fpn", weights="coco-ssd", classes=["camera"], **SMALL)
    a, b = build_model(cfg), build_model(cfg, load_weights=False)
    b.load_state_dict(a.state_dict())
    a.eval(), b.eval()
    x = [torch.rand(3, 200, 240)]
    with torch.no_grad():
        fa, fb = a.backbone(a.transform(x)[0].tensors), b.backbone(b.transform(x)[0].tensors)
    assert all(torch.allclose(fa[k], fb[k]) for k in fa)
    assert b.transform.image_mean == [0.5, 0.5, 0.5]


def test_folding_batch_norms_keeps_tensorflow_padding():
    """The inference speed-up folds each batch norm into its convolution: a Conv2dSame must
    stay one, or the folded model would read a shifted grid."""
    from regiondet.models.fold_bn import fold_batch_norms

    cfg = ModelConfig(backbone="mobilenet_v2_fpn", weights="coco-ssd", classes=["camera"], **SMALL)
    model = build_model(cfg).eval()
    x = torch.rand(1, 3, 224, 288) * 2 - 1
    with torch.no_grad():
        before = model.backbone(x)
        assert fold_batch_norms(model.backbone) > 0
        after = model.backbone(x)
    assert len([m for m in model.backbone.modules() if isinstance(m, Conv2dSame)]) == 5
    assert all(torch.allclose(before[k], after[k], atol=1e-4) for k in before)
