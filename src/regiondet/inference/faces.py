"""Faces blurred before anything is kept (the thesis's ethics chapter: process frames, keep
nothing; if something must be kept, blur the faces in it).

Faces are found by MTCNN from facenet-pytorch (its weights ship in the wheel; install it with
`pip install --no-deps facenet-pytorch`, as its own pins name old torch releases), else by
OpenCV 4's frontal-face cascade (OpenCV 5 no longer has cascades in its main module). Without
either, writing frames is refused rather than done with faces in them.
"""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np
from PIL import Image, ImageFilter

from regiondet.errors import UserError

FACE_DETECTORS = ("mtcnn", "cascade")
NO_FACE_DETECTOR = (
    "writing frames blurs faces first and needs a face detector: "
    "pip install --no-deps facenet-pytorch (or OpenCV 4 for its cascade), or pass --no-blur-faces"
)


def _has_cascade() -> bool:
    """OpenCV with its Haar cascades (OpenCV 4; OpenCV 5 moved them out of the main module)."""
    if not find_spec("cv2"):
        return False
    import cv2  # optional: the video extra

    return hasattr(cv2, "CascadeClassifier")


class FaceBlur:
    """blur(image) -> the image with every face found blurred beyond recognition: each face box,
    grown by `margin` of its size on every side, replaced by a heavy Gaussian blur of itself."""

    def __init__(self, detector: str | None = None, margin: float = 0.2, min_face: int = 12):
        self.kind = detector or ("mtcnn" if find_spec("facenet_pytorch") or not _has_cascade() else "cascade")
        self.margin = margin
        if self.kind == "mtcnn":
            if not find_spec("facenet_pytorch"):
                raise UserError(NO_FACE_DETECTOR)
            from facenet_pytorch import MTCNN  # optional: installed apart from regiondet's dependencies

            self.mtcnn = MTCNN(keep_all=True, min_face_size=min_face, device="cpu")
        elif self.kind == "cascade":
            if not _has_cascade():
                raise UserError(NO_FACE_DETECTOR)
            import cv2  # optional: the video extra

            self.cv2 = cv2
            self.cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
            self.min_face = min_face
        else:
            raise UserError(f"face detector '{self.kind}' is not one of {', '.join(FACE_DETECTORS)}")

    def faces(self, image: Image.Image) -> np.ndarray:
        """(N, 4) face boxes x1, y1, x2, y2 in the image's pixels."""
        rgb = image.convert("RGB")
        if self.kind == "mtcnn":
            boxes, _ = self.mtcnn.detect(rgb)
            return np.zeros((0, 4), np.float32) if boxes is None else np.asarray(boxes, np.float32)
        grey = self.cv2.cvtColor(np.asarray(rgb), self.cv2.COLOR_RGB2GRAY)
        found = self.cascade.detectMultiScale(grey, 1.1, 5, minSize=(self.min_face, self.min_face))
        boxes = np.asarray(found, np.float32).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        return boxes

    def blur(self, image: Image.Image) -> Image.Image:
        """A copy with each face blurred (the input is left as it was)."""
        out = image.convert("RGB").copy()
        for x1, y1, x2, y2 in self.faces(out):
            dx, dy = (x2 - x1) * self.margin, (y2 - y1) * self.margin
            box = (
                max(0, int(x1 - dx)),
                max(0, int(y1 - dy)),
                min(out.width, int(x2 + dx) + 1),
                min(out.height, int(y2 + dy) + 1),
            )
            if box[2] <= box[0] or box[3] <= box[1]:
                continue
            region = out.crop(box)
            radius = max(8, max(region.size) // 4)
            out.paste(region.filter(ImageFilter.GaussianBlur(radius)), box[:2])
        return out
