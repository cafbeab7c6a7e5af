"""Faces are blurred before anything is written: on real photos, by MTCNN and by the cascade."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter

from conftest import DATA
from regiondet.cli import main
from regiondet.inference.faces import FaceBlur, _has_cascade

SELFIE = sorted((DATA / "phone-photos" / "cellphone" / "test" / "images").glob("*.jpg"))[0]


def sharpness(image: Image.Image, box) -> float:
    """Variance of the edge response inside a box: high on a face, near zero once blurred."""
    region = image.convert("L").crop(tuple(int(v) for v in box)).filter(ImageFilter.FIND_EDGES)
    return float(np.asarray(region, np.float32)[2:-2, 2:-2].var())


@pytest.mark.parametrize("kind", ["mtcnn", "cascade"])
def test_a_face_is_blurred_and_nothing_else_changes(kind):
    pytest.importorskip("facenet_pytorch" if kind == "mtcnn" else "cv2")
    if kind == "cascade" and not _has_cascade():
        pytest.skip("OpenCV 5 has no Haar cascades in its main module (OpenCV 4 has)")
    image = Image.open(SELFIE).convert("RGB")
    blur = FaceBlur(kind)
    faces = blur.faces(image)
    assert len(faces) >= 1
    out = blur.blur(image)
    main_face = max(faces, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    assert sharpness(out, main_face) < sharpness(image, main_face) / 5
    grown = np.zeros((image.height, image.width), bool)
    for x1, y1, x2, y2 in faces:
        dx, dy = (x2 - x1) * blur.margin, (y2 - y1) * blur.margin
        grown[max(0, int(y1 - dy)) : int(y2 + dy) + 1, max(0, int(x1 - dx)) : int(x2 + dx) + 1] = True
    same = np.asarray(out) == np.asarray(image)
    assert same[~grown].all()  # outside the faces, every pixel as it was


def test_detect_out_blurs_faces_unless_told_not_to(tmp_path, capsys):
    pytest.importorskip("facenet_pytorch")
    face = FaceBlur("mtcnn").faces(Image.open(SELFIE).convert("RGB"))
    main_face = max(face, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    assert main(["detect", str(SELFIE), "--out", str(tmp_path / "blurred")]) == 0
    assert main(["detect", str(SELFIE), "--out", str(tmp_path / "kept"), "--no-blur-faces"]) == 0
    capsys.readouterr()
    blurred = Image.open(next((tmp_path / "blurred").glob("*.jpg")))
    kept = Image.open(next((tmp_path / "kept").glob("*.jpg")))
    assert sharpness(blurred, main_face) < sharpness(kept, main_face) / 5


def test_without_a_face_detector_nothing_is_written(tmp_path, capsys, monkeypatch):
    """No MTCNN and no cascade: detect --out refuses in one line rather than keep faces."""
    from regiondet.inference import faces

    monkeypatch.setattr(faces, "find_spec", lambda name: None)
    assert main(["detect", str(SELFIE), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--no-blur-faces" in err[0] and "facenet-pytorch" in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.jpg"))


def test_a_written_video_has_its_faces_blurred(tmp_path, capsys):
    """detect VIDEO --out: the frames of the drawn .mp4 are blurred where the faces are."""
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("facenet_pytorch")
    image = Image.open(SELFIE).convert("RGB").resize((320, 320))
    face = max(FaceBlur("mtcnn").faces(image), key=lambda b: (b[2] - b[0]) * (b[3] - b[1]))
    video = tmp_path / "selfie.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (320, 320))
    for _ in range(3):
        writer.write(np.ascontiguousarray(np.asarray(image)[:, :, ::-1]))
    writer.release()
    for out, extra in (("blurred", []), ("kept", ["--no-blur-faces"])):
        assert main(["detect", str(video), "--out", str(tmp_path / out), "--runtime", "torch", *extra]) == 0
    capsys.readouterr()

    def first_frame(folder: str) -> Image.Image:
        capture = cv2.VideoCapture(str(tmp_path / folder / "selfie.mp4"))
        ok, frame = capture.read()
        capture.release()
        assert ok
        return Image.fromarray(frame[:, :, ::-1])

    blurred, kept = first_frame("blurred"), first_frame("kept")
    # the codec's 8x8 blocks add edges of their own to a blurred region: half the sharpness, not a fifth
    assert sharpness(blurred, face) < sharpness(kept, face) / 2
    region = tuple(int(v) for v in face)
    diff = np.abs(np.asarray(blurred.crop(region), np.float32) - np.asarray(kept.crop(region), np.float32))
    assert diff.mean() > 10  # the face's pixels really changed
