"""Images of more than 8 bits per channel are scaled, not clipped to white."""

from __future__ import annotations

import numpy as np
from PIL import Image

from conftest import ROOT
from regiondet.data.images import load_rgb, load_upright
from regiondet.inference.predictor import Detector


def _grey_copies(tmp_path):
    """A real photo as 8-bit grey and as 16-bit grey PNG (the same picture, 257x the values)."""
    grey = np.asarray(Image.open(ROOT / "samples" / "camera_desk.jpg").convert("L"))
    eight, sixteen = tmp_path / "g8.png", tmp_path / "g16.png"
    Image.fromarray(grey, "L").save(eight)
    Image.fromarray(grey.astype(np.uint16) * 257).save(sixteen)  # mode I;16
    return grey, eight, sixteen


def test_sixteen_bit_grey_png_reads_like_its_eight_bit_copy(tmp_path):
    grey, eight, sixteen = _grey_copies(tmp_path)
    assert Image.open(sixteen).mode.startswith("I")
    a, b = load_rgb(eight), load_rgb(sixteen)
    assert b.dtype == np.uint8 and b.shape == a.shape
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert b.mean() < 250 and abs(b.mean() - grey.mean()) < 1  # not the near-white clip
    assert np.abs(np.asarray(load_upright(sixteen), int) - a).max() <= 1


def test_thirty_two_bit_and_float_images_are_scaled(tmp_path):
    grey, *_ = _grey_copies(tmp_path)
    wide = tmp_path / "g32.tif"
    Image.fromarray(grey.astype(np.int32) * 65536 * 100, "I").save(wide)  # beyond 16 bits: by its maximum
    scaled = load_rgb(wide)[..., 0].astype(int)
    assert np.abs(scaled - np.round(grey / grey.max() * 255)).max() <= 1
    unit = tmp_path / "f.tif"
    Image.fromarray(grey.astype(np.float32) / 255, "F").save(unit)
    assert np.abs(load_rgb(unit)[..., 0].astype(int) - grey).max() <= 1


def test_detector_sees_the_same_picture_in_both_depths(tmp_path):
    _, eight, sixteen = _grey_copies(tmp_path)
    det = Detector.load("default")
    p8, p16 = det.predict(eight, score=0.3), det.predict(sixteen, score=0.3)
    assert p8.labels == p16.labels and len(p8.boxes)
    assert np.abs(p8.boxes - p16.boxes).max() < 3 and np.abs(p8.scores - p16.scores).max() < 0.05


def _claimed_png(path, width: int, height: int) -> None:
    """A PNG whose header claims width x height pixels, with almost no data behind it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def test_oversized_image_is_one_line_and_a_folder_run_goes_on(tmp_path, capsys):
    """200 Mpx (over Pillow's bomb limit) and 100 Mpx (over regiondet's): skipped, named."""
    from regiondet.cli import main
    from regiondet.data.images import MAX_PIXELS

    folder = tmp_path / "in"
    folder.mkdir()
    _claimed_png(folder / "bomb.png", 20000, 10000)
    _claimed_png(folder / "big.png", 10000, 10000)
    (folder / "photo.jpg").write_bytes((ROOT / "samples" / "camera_desk.jpg").read_bytes())
    assert MAX_PIXELS < 10000 * 10000
    assert main(["--quiet", "detect", str(folder)]) == 0
    captured = capsys.readouterr()
    assert len([line for line in captured.out.splitlines() if line.startswith("{")]) == 1
    err = captured.err.strip().splitlines()
    assert len(err) == 2 and all("skipped" in line and "over the limit of 89 Mpx" in line for line in err)
    assert "bomb.png" in captured.err and "big.png" in captured.err and "Traceback" not in captured.err
