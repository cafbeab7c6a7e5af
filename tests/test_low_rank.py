"""The box head's first layer as its truncated SVD (model.box_head_rank): the best approximation
of its rank, applied when a model is loaded, kept out of checkpoints, refused where it saves
nothing."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torchvision.ops import box_iou

from conftest import ROOT, main
from regiondet.data.images import load_rgb
from regiondet.inference.predictor import Detector
from regiondet.models.checkpoint import read_checkpoint
from regiondet.models.low_rank import truncated


def test_truncated_layer_is_the_best_approximation_of_its_rank():
    torch.manual_seed(0)
    layer = nn.Linear(300, 40)
    x = torch.randn(16, 300)
    full = truncated(layer, 40)
    torch.testing.assert_close(full(x), layer(x), atol=1e-4, rtol=1e-4)  # all of its rank: the same layer
    s = torch.linalg.svdvals(layer.weight.detach())
    for rank in (5, 20):
        cut = truncated(layer, rank)
        product = cut[1].weight @ cut[0].weight
        assert cut[0].weight.shape == (rank, 300) and cut[1].weight.shape == (40, rank)
        # Eckart-Young: what is left out is exactly the singular values left out
        torch.testing.assert_close(torch.linalg.norm(layer.weight - product), s[rank:].norm(), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(cut[1].bias, layer.bias)


def test_a_factored_head_finds_what_the_trained_one_finds():
    """The default model with its 12544 -> 512 layer at rank 128 (a quarter of the multiply-adds),
    read once at its own size: on each sample photo its boxes at the default score are the full head's, moved by a few
    pixels and scored within a few hundredths; a rank-8 head is visibly another model."""
    full = Detector.load(
        "default", runtime="torch", overrides=["model.verify=false", "model.test_flip=false", "model.test_scales=[]"]
    )
    cut = Detector.load(
        "default",
        runtime="torch",
        overrides=["model.verify=false", "model.test_flip=false", "model.test_scales=[]", "model.box_head_rank=128"],
    )
    crude = Detector.load(
        "default",
        runtime="torch",
        overrides=["model.verify=false", "model.test_flip=false", "model.test_scales=[]", "model.box_head_rank=8"],
    )
    assert isinstance(cut.model.roi_heads.box_head.fc6, nn.Sequential)
    drift = []
    for path in sorted((ROOT / "samples").glob("*.jpg")):
        pixels = load_rgb(path)
        a, b, c = full.predict(pixels), cut.predict(pixels, score=0.2), crude.predict(pixels, score=0.2)
        assert len(a.boxes), path
        for box, label, score in zip(a.boxes, a.labels, a.scores, strict=True):
            same = [i for i, lab in enumerate(b.labels) if lab == label]
            overlap = box_iou(torch.as_tensor(box[None]), torch.as_tensor(b.boxes[same])).numpy()
            assert overlap.size and overlap.max() >= 0.9, (path.name, label)
            assert abs(b.scores[same][overlap.argmax()] - score) < 0.05
        drift.append(np.abs(c.scores[: len(a.scores)] - a.scores[: len(c.scores)]).max(initial=1.0))
    assert max(drift) > 0.05  # the test can tell heads apart


def test_rank_stays_out_of_checkpoints_and_is_refused_where_it_saves_nothing(tmp_path, capsys):
    out = tmp_path / "m.pt"
    assert main(["--quiet", "export", "default", str(out), "--set", "model.box_head_rank=128"]) == 0
    ckpt = read_checkpoint(out)
    assert ckpt["config"]["model"]["box_head_rank"] == 128
    assert ckpt["model"]["roi_heads.box_head.fc6.weight"].shape == (512, 12544)  # the trained layer
    assert isinstance(Detector.load(out, runtime="torch").model.roi_heads.box_head.fc6, nn.Sequential)
    image = str(sorted((ROOT / "samples").glob("*.jpg"))[0])
    assert main(["--quiet", "detect", image, "--model", "default", "--set", "model.box_head_rank=600"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "box_head_rank 600 saves nothing" in err[0] and "camera_phone.pt" in err[0]
