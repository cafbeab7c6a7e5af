"""The installed dependencies still have what regiondet calls, one OpenCV is installed, and
nothing is written outside what the user asked for.

A new release that drops an API (OpenCV 5.1 dropped `cv2.dnn.readNetFromTensorflow`) fails here
in one line naming the distribution, its version and what needed it, instead of deep in a test.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distributions, version

import pytest

from conftest import ROOT

# (distribution, module, attribute path, what calls it): every third-party API whose loss would
# break a feature without an import error (OpenCV's Haar cascade, gone in OpenCV 5, is a
# fallback that faces.py already looks for before use)
APIS = [
    ("opencv-python-headless", "cv2", "VideoCapture", "video input (inference/sources.py)"),
    ("opencv-python-headless", "cv2", "VideoWriter", "video output (inference/video.py)"),
    ("opencv-python-headless", "cv2", "VideoWriter_fourcc", "video output (inference/video.py)"),
    ("opencv-python-headless", "cv2", "CAP_PROP_FPS", "video input (inference/sources.py)"),
    ("opencv-python-headless", "cv2", "CAP_PROP_FRAME_COUNT", "video input (inference/sources.py)"),
    ("opencv-python-headless", "cv2", "setNumThreads", "benchmark boxes' coco-ssd peer"),
    ("opencv-python-headless", "cv2", "dnn.blobFromImage", "benchmark boxes' coco-ssd peer"),
    ("opencv-python-headless", "cv2", "dnn.readNetFromTensorflow", "benchmark boxes' coco-ssd peer"),
    ("onnxruntime", "onnxruntime", "InferenceSession", "running .onnx models (inference/onnx_model.py)"),
    ("onnxruntime", "onnxruntime", "SessionOptions", "running .onnx models (inference/onnx_model.py)"),
    ("onnxruntime", "onnxruntime", "disable_telemetry_events", "no telemetry (inference/onnx_model.py)"),
    ("onnxruntime", "onnxruntime.quantization", "quantize_static", "export --int8 (inference/quantize.py)"),
    ("onnxruntime", "onnxruntime.quantization", "CalibrationDataReader", "export --int8 (inference/quantize.py)"),
    ("onnxruntime", "onnxruntime.quantization", "CalibrationMethod", "export --int8 (inference/quantize.py)"),
    ("onnxruntime", "onnxruntime.quantization", "QuantFormat.QDQ", "export --int8 (inference/quantize.py)"),
    ("onnx", "onnx", "load_from_string", "export (inference/export.py)"),
    ("onnx", "onnx", "helper.set_model_props", "export (inference/onnx_model.py)"),
    ("protobuf", "google.protobuf.message_factory", "GetMessageClass", "weights: coco-ssd (models/tf_graph.py)"),
    ("protobuf", "google.protobuf.descriptor_pool", "DescriptorPool", "weights: coco-ssd (models/tf_graph.py)"),
    ("starlette", "starlette.formparsers", "MultiPartParser", "the service's uploads (serve/app.py)"),
    ("starlette", "starlette.concurrency", "run_in_threadpool", "the service (serve/app.py)"),
    ("timm", "timm", "create_model", "the crop verifier's EfficientNet-Lite0 (models/verifier.py)"),
]
# OpenCV's four builds share one cv2/ folder: two installed overwrite each other's files
OPENCV_BUILDS = {"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"}


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "(not installed)"


@pytest.mark.parametrize("dist,module,attr,used_by", APIS, ids=[f"{m}.{a}" for _, m, a, _ in APIS])
def test_the_apis_regiondet_calls_exist(dist, module, attr, used_by):
    try:
        obj = importlib.import_module(module)
    except ImportError as e:
        pytest.fail(f"{dist} {_version(dist)}: cannot import {module} ({e}), needed by {used_by}")
    for part in attr.split("."):
        if not hasattr(obj, part):
            pytest.fail(f"{dist} {_version(dist)} has no {module}.{attr}, needed by {used_by}", pytrace=False)
        obj = getattr(obj, part)


def test_one_opencv_is_installed():
    names = sorted({d.metadata["Name"].lower() for d in distributions()} & OPENCV_BUILDS)
    assert len(names) <= 1, (
        f"{' and '.join(names)} are installed together and overwrite each other's cv2/; keep opencv-python-headless"
    )


def test_pip_check_is_clean():
    """Every installed distribution's requirements are met: no package installed with --no-deps
    whose requirements are missing or pinned to other releases (weights come vendored instead)."""
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    assert done.returncode == 0, "pip check: " + "; ".join(done.stdout.strip().splitlines())


def test_importing_onnxruntime_through_regiondet_writes_no_telemetry(tmp_path):
    """ONNX Runtime writes ~/.cache/Microsoft/.../onnxruntime.db and a device id on import unless
    told not to; regiondet tells it before anything imports it."""
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY")}
    env["HOME"] = str(home)
    # first without regiondet: where this ONNX Runtime writes nothing there is nothing to stop
    subprocess.run([sys.executable, "-c", "import onnxruntime"], env=env, cwd=tmp_path, check=True, timeout=120)
    if not list(home.rglob("onnxruntime.db")):
        pytest.skip("onnxruntime writes no telemetry database on this machine even when not told")
    shutil.rmtree(home)
    home.mkdir()
    code = "import regiondet, onnxruntime; from regiondet.inference.onnx_model import require; require('onnxruntime')"
    subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path, check=True, timeout=120)
    assert not [p for p in home.rglob("*") if p.is_file()]


def test_detect_and_serve_write_nothing_they_were_not_asked_for(tmp_path):
    """`detect` (ONNX Runtime, no --out) and the service answering a request leave the home
    folder, the working folder and the temporary folder as they were."""
    home, work, temp = (tmp_path / n for n in ("home", "work", "temp"))
    for d in (home, work, temp):
        d.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY")}
    env.update(HOME=str(home), TMPDIR=str(temp), MPLCONFIGDIR=str(temp / "mpl"))
    photo = ROOT / "samples" / "phone_webcam.jpg"
    detect = [sys.executable, "-m", "regiondet.cli", "detect", str(photo), "--runtime", "onnxruntime"]
    out = subprocess.run(detect, env=env, cwd=work, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-500:]
    assert '"boxes"' in out.stdout
    serve = (
        "from fastapi.testclient import TestClient\n"
        "from regiondet.serve.app import Settings, create_app\n"
        f"with TestClient(create_app(Settings(runtime='onnxruntime'))) as c:\n"
        f"    r = c.post('/v1/detect', files={{'image': open({str(photo)!r}, 'rb')}})\n"
        "    assert r.status_code == 200, r.text\n"
    )
    out = subprocess.run([sys.executable, "-c", serve], env=env, cwd=work, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-500:]
    written = [p for d in (home, work, temp) for p in d.rglob("*") if p.is_file() and "mpl" not in p.parts]
    assert not written, written
