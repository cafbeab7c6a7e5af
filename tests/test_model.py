"""The backbones assemble into torchvision Faster R-CNNs with the thesis's knobs."""

from __future__ import annotations

import pytest
import torch
import torchvision

from conftest import ICDAR, ROOT
from regiondet.config import ModelConfig
from regiondet.models.faster_rcnn import BandMatcher, build_model
from regiondet.models.weights import deepsort_weights_path

SMALL = dict(
    min_size=128,
    max_size=128,
    representation_size=64,
    rpn_post_nms_top_n_train=50,
    rpn_post_nms_top_n_test=20,
    box_batch_size_per_image=4,
)


def targets():
    return [
        {"boxes": torch.tensor([[10.0, 20.0, 90.0, 100.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # a negative image
    ]


@pytest.mark.parametrize(
    "backbone",
    [
        "vgg16",
        "resnet50_c4",
        "mobilenet_v2_fpn",
        "mobilenet_v3_fpn",
        "vgg16_fpn",
        "craft_fpn",
        "efficientnet_lite0_fpn",
    ],
)
def test_backbone_trains_and_predicts(backbone):
    torch.manual_seed(0)
    strides = {"fpn_strides": [8, 16]} if backbone in ("vgg16_fpn", "craft_fpn") else {}
    model = build_model(ModelConfig(backbone=backbone, classes=["camera", "phone"], **strides, **SMALL))
    model.train()
    losses = model([torch.rand(3, 128, 128), torch.rand(3, 128, 160)], targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    assert model.roi_heads.box_predictor.cls_score.out_features == 3
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 4
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 128, 128)])[0]
    assert out["boxes"].shape[1] == 4 and len(out["scores"]) == len(out["labels"])


def test_deepsort_weights_load_offline_and_freeze():
    cfg = ModelConfig(backbone="mobilenet_v2_fpn", weights="deepsort", trainable_layers=2, **SMALL)
    model = build_model(cfg)
    src = torch.load(deepsort_weights_path(), weights_only=True)
    body = model.backbone.body
    assert torch.equal(body["0"][0].weight, src["features.0.0.weight"])
    assert torch.equal(body["18"][1].running_var, src["features.18.1.running_var"])
    assert not body["0"][0].weight.requires_grad and body["18"][0].weight.requires_grad
    with pytest.raises(Exception, match="MobileNetV2"):
        build_model(ModelConfig(backbone="vgg16", weights="deepsort", **SMALL))


def test_mobilenet_fpn_keeps_a_stride_16_map():
    model = build_model(ModelConfig(backbone="mobilenet_v2_fpn", fpn_strides=[8, 16, 32], **SMALL))
    maps = model.backbone(torch.rand(1, 3, 128, 128))
    assert [tuple(v.shape[-2:]) for v in maps.values()] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    with pytest.raises(Exception, match="fpn_strides"):
        build_model(ModelConfig(backbone="mobilenet_v3_fpn", fpn_strides=[12], **SMALL))


def test_lite0_fpn_is_imagenet_efficientnet_lite0_up_to_its_pooling(tmp_path):
    """`model.weights: lite0`: the FPN taps the stride-16 and stride-32 ends of the ImageNet
    network itself (its 1280-channel head conv, pooled, is the package's features), batch norm
    frozen; rebuilt from a checkpoint it holds the same tensors."""
    from regiondet.models.weights import build_lite0

    cfg = ModelConfig(backbone="efficientnet_lite0_fpn", weights="lite0", **SMALL)
    model = build_model(cfg).eval()
    body = model.backbone.body
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        h = x
        for block in body.values():
            h = block(h)
        expected = build_lite0()(x)
    assert h.shape[1:] == (1280, 4, 4)
    torch.testing.assert_close(h.mean((2, 3)), expected, rtol=1e-4, atol=1e-4)
    maps = model.backbone(x)
    assert [tuple(v.shape[-2:]) for v in maps.values()] == [(8, 8), (4, 4), (2, 2)]
    assert not any(type(m).__name__ in ("BatchNorm2d", "BatchNormAct2d") for m in body.modules())
    again = build_model(cfg, load_weights=False)
    again.load_state_dict(model.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(again.eval().backbone(x)["0"], maps["0"])
    with pytest.raises(Exception, match="EfficientNet-Lite0"):
        build_model(ModelConfig(backbone="mobilenet_v2_fpn", weights="lite0", **SMALL))


def test_anchor_and_proposal_settings_reach_torchvision():
    cfg = ModelConfig(
        backbone="vgg16",
        anchor_sizes=[64, 128, 256],
        aspect_ratios=[0.5, 1, 2],
        rpn_post_nms_top_n_test=300,
        rpn_nms_thresh=0.7,
        box_nms_thresh=0.2,
        **{k: v for k, v in SMALL.items() if k != "rpn_post_nms_top_n_test"},
    )
    model = build_model(cfg)
    assert model.rpn.anchor_generator.num_anchors_per_location() == [9]  # the thesis's 9 anchors
    model.eval()
    assert model.rpn.post_nms_top_n() == 300
    assert model.roi_heads.nms_thresh == 0.2


def test_band_matcher_ignores_far_rois():
    m = BandMatcher(0.5, 0.5, 0.1)
    iou = torch.tensor([[0.7, 0.3, 0.05]])  # one gt, three proposals
    assert m(iou).tolist() == [0, BandMatcher.BELOW_LOW_THRESHOLD, BandMatcher.BETWEEN_THRESHOLDS]
    model = build_model(ModelConfig(backbone="mobilenet_v3_fpn", box_bg_iou_floor=0.1, **SMALL))
    assert isinstance(model.roi_heads.proposal_matcher, BandMatcher)


def test_probes_count_overlapping_proposals_and_head_accuracy():
    from regiondet.engine.probes import TrainProbes

    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="mobilenet_v3_fpn", **SMALL))
    probes = TrainProbes(model)
    model.train()
    big = {"boxes": torch.tensor([[4.0, 4.0, 124.0, 124.0]]), "labels": torch.tensor([1])}
    model([torch.rand(3, 128, 128), torch.rand(3, 128, 128)], [big, big])
    assert probes.overlap_images == 2  # one count per image with objects
    assert probes.total == 2 * SMALL["box_batch_size_per_image"]
    s = probes.summary()
    assert s["rpn_overlapping_proposals"] > 0 and 0 <= s["head_accuracy"] <= 1
    assert probes.summary() == {"rpn_overlapping_proposals": 0.0, "head_accuracy": 0.0}  # reset


def test_se_vgg16_takes_the_craft_trunk_offline():
    import easyocr_en_models

    cfg = ModelConfig(backbone="se_vgg16", weights="craft", trainable_layers=3, **SMALL)
    model = build_model(cfg)
    path = f"{easyocr_en_models.model_dir()}/craft_mlt_25k.pth"
    craft = torch.load(path, map_location="cpu", weights_only=True)
    feats = model.backbone.features
    assert torch.equal(feats[37].weight, craft["module.basenet.slice4.37.weight"])  # conv5_2
    assert torch.equal(feats[38].running_var, craft["module.basenet.slice4.38.running_var"])
    assert not feats[0].weight.requires_grad and feats[40].weight.requires_grad  # early stages frozen
    assert len(model.backbone.se) == 5 and model.backbone(torch.rand(1, 3, 64, 96)).shape == (1, 512, 4, 6)


def test_vgg16_box_backbone_takes_the_craft_trunk_as_its_pretrained_features():
    """The grid's pretrained VGG16: the VGG16-BN variant, CRAFT's tensors, frozen statistics, stride 16."""
    import easyocr_en_models
    from torchvision.ops import FrozenBatchNorm2d

    cfg = ModelConfig(backbone="vgg16", weights="craft", trainable_layers=3, **SMALL)
    model = build_model(cfg)
    craft = torch.load(f"{easyocr_en_models.model_dir()}/craft_mlt_25k.pth", map_location="cpu", weights_only=True)
    feats = model.backbone
    assert torch.equal(feats[37].weight, craft["module.basenet.slice4.37.weight"])
    assert isinstance(feats[38], FrozenBatchNorm2d) and torch.equal(
        feats[38].running_mean, craft["module.basenet.slice4.38.running_mean"]
    )
    assert not feats[0].weight.requires_grad and feats[40].weight.requires_grad
    assert feats(torch.rand(1, 3, 64, 96)).shape == (1, 512, 4, 6)
    rebuilt = build_model(cfg, load_weights=False)  # what a checkpoint is loaded into
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    plain = build_model(ModelConfig(backbone="vgg16", weights="none", **SMALL))
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, FrozenBatchNorm2d)) for m in plain.modules())


def test_difficult_objects_are_ignored_not_dropped_in_box_training():
    """MSRA-TD500's difficult lines reach the detector as label -1: no anchor or RoI learns them either way."""
    from conftest import MSRA
    from regiondet.data.dataset import DetectionDataset
    from regiondet.data.spec import load_spec

    samples = [s for s in load_spec(f"msra-td500:{MSRA}") if s.ignore.any()][:2]
    ds = DetectionDataset(samples, ["text"])
    images, tgts = zip(*(ds[i] for i in range(len(ds))), strict=True)
    for s, t in zip(samples, tgts, strict=True):
        assert (t["labels"] == -1).sum() == s.ignore.sum() and len(t["labels"]) == len(s.boxes)
    torch.manual_seed(0)
    model = build_model(ModelConfig(backbone="mobilenet_v3_fpn", classes=["text"], **SMALL)).train()
    small = [torch.nn.functional.interpolate(x[None], size=(128, 160))[0] for x in images]
    scaled = []
    for x, t in zip(images, tgts, strict=True):
        f = torch.tensor([160 / x.shape[2], 128 / x.shape[1]] * 2)
        scaled.append({"boxes": t["boxes"] * f, "labels": t["labels"]})
    losses = model(small, scaled)
    assert all(torch.isfinite(v) for v in losses.values())
    anchors = [scaled[0]["boxes"]]  # an anchor on each line: care lines positive, difficult ones ignored
    labels, _ = model.rpn.assign_targets_to_anchors(anchors, scaled[:1])
    assert labels[0].tolist() == [-1.0 if lab == -1 else 1.0 for lab in scaled[0]["labels"].tolist()]


def test_vgg16_fpn_taps_craft_conv3_to_conv5_at_strides_4_to_16():
    """The text trunk: CRAFT's VGG16-BN with an FPN on conv3_3 / conv4_3 / conv5_3, early stages frozen."""
    import easyocr_en_models

    cfg = ModelConfig(backbone="vgg16_fpn", weights="craft", fpn_strides=[4, 8, 16], trainable_layers=1, **SMALL)
    model = build_model(cfg)
    craft = torch.load(f"{easyocr_en_models.model_dir()}/craft_mlt_25k.pth", map_location="cpu", weights_only=True)
    body = model.backbone.body
    assert torch.equal(body["24"].weight, craft["module.basenet.slice3.24.weight"])  # conv4_1
    assert torch.equal(body["37"].weight, craft["module.basenet.slice4.37.weight"])  # conv5_2
    assert not body["30"].weight.requires_grad and body["40"].weight.requires_grad  # only stage 5 trains
    maps = model.backbone(torch.rand(1, 3, 128, 128))
    assert [tuple(v.shape[-2:]) for v in maps.values()] == [(32, 32), (16, 16), (8, 8), (4, 4)]
    rebuilt = build_model(cfg, load_weights=False)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    with pytest.raises(Exception, match="fpn_strides"):
        build_model(ModelConfig(backbone="vgg16_fpn", fpn_strides=[32], **SMALL))


def test_craft_fpn_is_craft_up_to_its_score_head(tmp_path):
    """craft_fpn's decoder gives the same maps as EasyOCR's own CRAFT on a real scene, and an
    FPN reads them at the chosen strides; only the last decoder blocks train."""
    import easyocr_en_models
    from easyocr.craft import CRAFT
    from PIL import Image
    from torchvision.transforms.v2 import functional as TF

    cfg = ModelConfig(backbone="craft_fpn", weights="craft", fpn_strides=[2, 4, 8, 16], trainable_layers=2, **SMALL)
    model = build_model(cfg).eval()
    state = torch.load(f"{easyocr_en_models.model_dir()}/craft_mlt_25k.pth", map_location="cpu", weights_only=True)
    reference = CRAFT()
    reference.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    image = TF.to_dtype(TF.pil_to_tensor(Image.open(ICDAR / "images" / "img_1.jpg").convert("RGB")), scale=True)
    x = TF.normalize(image[:, 200:360, 400:640], [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])[None]
    with torch.no_grad():
        _, feature = reference.eval()(x)
        maps = model.backbone.body(x)
        pyramid = model.backbone(x)
    assert torch.allclose(maps["0"], feature, atol=1e-4)  # stride 2, built from the coarser three
    assert [tuple(v.shape[-2:]) for v in pyramid.values()] == [(80, 120), (40, 60), (20, 30), (10, 15), (5, 8)]
    body = model.backbone.body
    assert not body.upconv2.conv[0].weight.requires_grad and body.upconv3.conv[0].weight.requires_grad
    rebuilt = build_model(cfg, load_weights=False)
    assert rebuilt.state_dict().keys() == model.state_dict().keys()
    coarse = build_model(ModelConfig(backbone="craft_fpn", fpn_strides=[8, 16], **SMALL))
    assert not hasattr(coarse.backbone.body, "upconv3")  # nothing finer than asked is run
    with pytest.raises(Exception, match="fpn_strides"):
        build_model(ModelConfig(backbone="craft_fpn", fpn_strides=[32], **SMALL))
    vgg = torchvision.models.vgg16_bn().features.state_dict()
    torch.save({f"features.{k}": v for k, v in vgg.items()}, tmp_path / "vgg16_bn.pth")
    own = build_model(
        ModelConfig(backbone="craft_fpn", weights=str(tmp_path / "vgg16_bn.pth"), fpn_strides=[16], **SMALL)
    )
    assert torch.equal(getattr(own.backbone.body.basenet.slice4, "37").weight, vgg["37.weight"])  # conv5_2, by position
    torch.save(model.state_dict(), tmp_path / "craft_fpn.pt")
    again = build_model(
        ModelConfig(backbone="craft_fpn", weights=str(tmp_path / "craft_fpn.pt"), fpn_strides=[16], **SMALL)
    )
    assert torch.equal(again.backbone.body.upconv1.conv[3].weight, body.upconv1.conv[3].weight)  # by name


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_builds_its_model(path):
    """A config in configs/ (or every cell of a grid file) validates and assembles, so a
    recipe in the docs cannot rot when a backbone or setting changes."""
    from regiondet.config import config_from_dict, load_config
    from regiondet.experiments.grid import load_grid
    from regiondet.io import read_yaml

    if "axes" in read_yaml(path, "config"):
        configs = [config_from_dict(cell.config, cell.name) for cell in load_grid(path)[1]]
    else:
        configs = [load_config(path)]
    for cfg in configs:
        model = build_model(cfg.model, load_weights=False)
        assert model.roi_heads.box_predictor.cls_score.out_features == len(cfg.model.classes) + 1
