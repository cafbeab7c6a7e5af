"""Shared fixtures: the real data beside the repository and one tiny trained model."""

from __future__ import annotations

import inspect
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from regiondet.cli import main

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CAMERA_TRAIN = DATA / "openimages-camera" / "train"
CAMERA_VALID = DATA / "openimages-camera" / "valid"
PHONE_YAML = DATA / "phone-webcam" / "data.yaml"
ICDAR = DATA / "icdar2015"
MSRA = DATA / "msra-td500" / "train"

HAVE_DATA = CAMERA_TRAIN.is_dir()
DATA_NAMES = ("DATA", "CAMERA_TRAIN", "CAMERA_VALID", "PHONE_YAML", "ICDAR", "MSRA", "tiny_config")
DATA_FIXTURES = {"trained_run"}


def _needs_data(item: pytest.Item) -> bool:
    """A test reads ../shared when its module imports one of the data paths above (or the tiny
    config built on them), when it uses a fixture trained on them, or names ../shared itself."""
    module = getattr(item, "module", None)
    if module is not None and any(getattr(module, n, None) is globals()[n] for n in DATA_NAMES):
        return True
    if DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
        return True
    function = getattr(item, "function", None)
    try:
        return function is not None and "../shared" in inspect.getsource(function)
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Without ../shared beside the clone, the tests that need its data are skipped with the
    reason; the others still run."""
    if HAVE_DATA:
        return
    skip = pytest.mark.skip(reason=f"needs the shared data at {DATA} (clone regiondet next to the shared folder)")
    for item in items:
        if _needs_data(item):
            item.add_marker(skip)


def tiny_config(out: Path, **train) -> dict:
    """A small, fast model on a slice of real camera photos (with a few negatives)."""
    return {
        "model": {
            "backbone": "mobilenet_v2_fpn",
            "classes": ["camera"],
            "weights": "deepsort",
            "trainable_layers": 5,
            "min_size": 224,
            "max_size": 224,
            "rpn_pre_nms_top_n_train": 300,
            "rpn_post_nms_top_n_train": 100,
            "rpn_pre_nms_top_n_test": 200,
            "rpn_post_nms_top_n_test": 50,
            "box_batch_size_per_image": 32,
            "representation_size": 128,
        },
        "data": {
            "train": [f"voc:{CAMERA_TRAIN}?limit=12"],
            "negatives": [f"icdar2015:{ICDAR}?limit=2"],
            "val": [f"voc:{CAMERA_VALID}?limit=6"],
            "val_negatives": [f"icdar2015:{ICDAR}?part=holdout&limit=3"],
        },
        "train": {
            "out": str(out),
            "epochs": 3,
            "steps_per_epoch": 5,
            "batch_size": 2,
            "warmup_steps": 2,
            "workers": 0,
            "seed": 0,
            **train,
        },
    }


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A tiny model trained once through the real CLI; shared by the inference tests."""
    tmp = tmp_path_factory.mktemp("run")
    cfg = write_config(tmp / "tiny.yaml", tiny_config(tmp / "out"))
    assert main(["--quiet", "train", str(cfg)]) == 0
    return tmp / "out"


def _interruptible() -> None:
    """In the child: Ctrl-C as a terminal delivers it, even when the tests run in the background
    (a shell starts background jobs with SIGINT ignored, and a child inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_service(
    cwd: Path | None = None, wait_s: float = 60.0, extra: list[str] | None = None
) -> tuple[subprocess.Popen, str]:
    """`regiondet serve` in its own process on a free port, as a user starts it; returns once
    /healthz answers (its model loaded), or raises with the service's own error output."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "regiondet.cli", "serve", "--port", str(port), "--threads", "2", *(extra or [])],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=_interruptible,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            urllib.request.urlopen(url + "healthz", timeout=1)
            return proc, url
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(proc.stderr.read().decode()) from None
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"regiondet serve did not answer within {wait_s:.0f} s") from None
            time.sleep(0.25)
