"""The page's device mode, server side: the graphs it downloads give the model's own outputs on
real photos, the runtime it loads is the recorded one, and the service hands both out."""

from __future__ import annotations

import hashlib
import json
import zlib
from importlib import resources

import numpy as np
import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from conftest import ROOT
from regiondet.inference.multiscale import FLIP_SAME_IOU, scale_sizes
from regiondet.inference.onnx_model import resize_for_graph
from regiondet.inference.predictor import Detector, to_tensor
from regiondet.models.sizes import scale_of
from regiondet.serve.app import Settings, create_app
from regiondet.serve.device import device_model

ORT_DIR = resources.files("regiondet.serve.static") / "ort"


@pytest.fixture(scope="module")
def made():
    return device_model("default")


@pytest.fixture(scope="module")
def reference():
    return Detector.load("default", runtime="onnxruntime")


def rgba_of(path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"))
    return np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], 2)


@pytest.mark.parametrize("photo", ["camera_desk.jpg", "camera_compact.jpg", "phone_webcam.jpg"])
def test_the_graphs_give_the_models_outputs_from_rgba_bytes(made, reference, photo):
    """The detector graph fed the frame's RGBA bytes and its read size gives what the served model
    gives for the image resized in Python; the verifier graph cuts the same crops and gives the
    same lens probabilities and class shares (the webcam photo cut to 640 x 420: a frame that is
    not square)."""
    rgba = rgba_of(ROOT / "samples" / photo)
    if photo == "phone_webcam.jpg":
        rgba = np.ascontiguousarray(rgba[100:520])
    h, w = rgba.shape[:2]
    s = scale_of((made.settings["min_size"], made.settings["max_size"]), h, w)
    size = np.array([int(np.floor(h * s)), int(np.floor(w * s))], np.int64)
    boxes, labels, scores = ort.InferenceSession(made.detector).run(None, {"rgba": rgba, "size": size})
    image = to_tensor(rgba[..., :3])
    resized = resize_for_graph(image, (made.settings["min_size"], made.settings["max_size"]))
    assert tuple(resized.shape[1:]) == tuple(size)
    want = reference.model.session.run(None, {"image": resized.numpy()})
    assert len(scores) == len(want[2]) > 0
    assert np.abs(boxes - want[0]).max() < 0.01 and np.abs(scores - want[2]).max() < 1e-4
    assert (labels == want[1]).all()
    full = torch.from_numpy(boxes * np.array([w / size[1], h / size[0]] * 2, np.float32))
    p, shares = ort.InferenceSession(made.verifier).run(None, {"rgba": rgba, "boxes": full.numpy()})
    lens, kinds = reference.verifier.look(image, full)
    np.testing.assert_allclose(p, lens.numpy(), atol=1e-4)
    np.testing.assert_allclose(shares, kinds.numpy(), atol=1e-4)  # which class each crop shows


def test_settings_are_what_predict_uses(made, reference):
    m = reference.config.model
    s = made.settings
    assert s["classes"] == reference.classes and s["score"] == reference.score
    assert (s["cross_class_iou"], s["contained_thresh"], s["contained_score_ratio"]) == (
        m.box_cross_class_iou,
        m.box_contained_thresh,
        m.box_contained_score_ratio,
    )
    assert s["verifier"] == {"crop": reference.verifier.settings.crop, "grow": reference.verifier.settings.grow}
    assert (s["flip"], s["flip_iou"]) == (m.test_flip, FLIP_SAME_IOU)
    assert s["verify_classes"] == m.verify_classes > 0  # the shipped verifier reads classes too
    assert s["scales"] == [list(size) for size in scale_sizes(m)[1:]]  # a still's extra sizes
    assert (s["scales_live"], s["nms_thresh"], s["limit"]) == (
        m.test_scales_live,
        m.box_nms_thresh,
        m.box_detections_per_img,
    )


def test_the_vendored_runtime_is_the_recorded_one():
    record = json.loads((ORT_DIR / "VERSION.json").read_text())
    assert record["package"] == "onnxruntime-web" and record["license"] == "MIT"
    for name, digest in record["sha256"].items():
        assert hashlib.sha256((ORT_DIR / name).read_bytes()).hexdigest() == digest, name


def test_the_service_hands_out_the_runtime_and_the_graphs_isolated():
    """Every answer is cross-origin isolated (WebAssembly threads need it); the runtime's files
    come with their types; the page detects at the service's score; a text model or an unknown
    file is a JSON error."""
    with TestClient(create_app(Settings(model="default", score=0.45))) as client:
        page = client.get("/")
        assert page.headers["cross-origin-opener-policy"] == "same-origin"
        assert page.headers["cross-origin-embedder-policy"] == "require-corp"
        wasm = client.get("/static/ort/ort-wasm-simd-threaded.wasm")
        assert wasm.status_code == 200 and wasm.headers["content-type"] == "application/wasm"
        assert wasm.content[:4] == b"\0asm"
        assert client.get("/static/ort/ort.wasm.min.mjs").headers["content-type"].startswith("text/javascript")
        assert client.get("/static/ort/..%2Fapp.js").status_code == 404
        settings = client.get("/v1/device/default/settings.json").json()
        assert settings["classes"] == ["camera", "phone"] and settings["score"] == 0.45  # the service's score
        graph = client.get("/v1/device/default/detector.onnx")
        assert graph.status_code == 200 and len(graph.content) > 1e6
        assert client.get("/v1/device/default/weights.bin").json()["error"].startswith("no device file")
        if any(m["name"] == "text" for m in client.get("/v1/models").json()["models"]):
            refused = client.get("/v1/device/text/settings.json")
            assert refused.status_code == 400 and "box models" in refused.json()["error"]


def test_the_wheel_with_the_runtime_stays_under_95_mb():
    """Everything the wheel carries (the models, the page, both builds of ONNX Runtime Web),
    deflated as a wheel deflates it, within 95 MB."""
    package = ROOT / "src" / "regiondet"
    files = [f for f in package.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    total = sum(len(zlib.compress(f.read_bytes(), 6)) for f in files)
    assert total < 95e6, f"{total / 1e6:.1f} MB"
