"""Text readers (CTW1500, Total-Text) on hand-made files, and the adaptive point pairs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from shapely import contains_xy
from shapely.geometry import Polygon

from conftest import ICDAR
from regiondet.data.images import load_rgb
from regiondet.data.point_pairs import pairs_to_polygon, polygon_to_pairs, reduce_pairs
from regiondet.data.spec import load_spec
from regiondet.data.text_dataset import TextDataset, rotate_sample
from regiondet.errors import UserError


def arc_polygon(k: int, radius: float = 100, width: float = 20, sweep: float = np.pi / 2) -> np.ndarray:
    """A curved band: k points on the outer arc left to right, k on the inner arc back."""
    t = np.linspace(np.pi / 2 + sweep / 2, np.pi / 2 - sweep / 2, k)
    outer = np.stack([200 + radius * np.cos(t), 200 - radius * np.sin(t)], 1)
    inner = np.stack([200 + (radius - width) * np.cos(t), 200 - (radius - width) * np.sin(t)], 1)
    return np.concatenate([outer, inner[::-1]]).astype(np.float32)


def test_icdar_quad_gives_two_pairs_in_reading_order():
    quad = load_spec(f"icdar2015:{ICDAR}?limit=1")[0].polygons[0]
    pairs = polygon_to_pairs(quad)
    assert pairs.shape == (2, 2, 2)
    np.testing.assert_array_equal(pairs[0], [quad[0], quad[3]])  # top-left with bottom-left
    np.testing.assert_array_equal(pairs_to_polygon(pairs), quad)


def test_straight_text_reduces_to_two_pairs_and_curves_keep_more():
    straight = np.array([[0, 0], [50, 0], [100, 0], [150, 0], [150, 30], [100, 30], [50, 30], [0, 30]], np.float32)
    assert len(reduce_pairs(polygon_to_pairs(straight))) == 2
    curved = polygon_to_pairs(arc_polygon(14, width=30))  # densely sampled quarter arc
    reduced = reduce_pairs(curved)
    assert 2 < len(reduced) < 14
    np.testing.assert_array_equal(reduced[0], curved[0])
    np.testing.assert_array_equal(reduced[-1], curved[-1])
    from shapely.geometry import Polygon

    a, b = Polygon(pairs_to_polygon(curved)), Polygon(pairs_to_polygon(reduced))
    assert a.intersection(b).area / a.union(b).area > 0.93


def test_odd_polygon_is_refused():
    with pytest.raises(ValueError, match="5 vertices"):
        polygon_to_pairs(np.zeros((5, 2)))


def _one_image(tmp_path, folder):
    (tmp_path / folder).mkdir()
    shutil.copy(ICDAR / "images" / "img_1.jpg", tmp_path / folder / "0001.jpg")


def test_ctw1500_txt_offsets_xml_and_absolute(tmp_path):
    _one_image(tmp_path, "text_image")
    (tmp_path / "text_label_curve").mkdir()
    pts = arc_polygon(7)
    x0, y0 = pts.min(0).astype(int)
    offsets = (pts.round() - [x0, y0]).astype(int).reshape(-1)
    x1, y1 = pts.max(0).astype(int)
    line = ",".join(str(v) for v in [x0, y0, x1, y1, *offsets])
    (tmp_path / "text_label_curve" / "0001.txt").write_text(line + "\n")
    s = load_spec(f"ctw1500:{tmp_path}")[0]
    np.testing.assert_allclose(s.polygons[0], pts.round(), atol=1)
    (tmp_path / "text_label_curve" / "0001.txt").write_text(
        ",".join(str(int(v)) for v in pts.reshape(-1)) + ",#######\n"
    )
    s = load_spec(f"ctw1500:{tmp_path}")[0]
    assert s.polygons[0].shape == (14, 2) and s.ignore.tolist() == [True]
    (tmp_path / "text_label_curve" / "0001.txt").unlink()
    segs = ",".join(str(int(v)) for v in pts.reshape(-1))
    (tmp_path / "text_label_curve" / "0001.xml").write_text(
        f"<Annotations><image file='0001.jpg'><box><label>abc</label><segs>{segs}</segs></box></image></Annotations>"
    )
    s = load_spec(f"ctw1500:{tmp_path}")[0]
    assert s.texts == ["abc"] and s.polygons[0].shape == (14, 2)
    (tmp_path / "text_label_curve" / "0001.xml").unlink()
    (tmp_path / "text_label_curve" / "0001.txt").write_text("1,2,3\n")
    with pytest.raises(UserError, match=r"0001\.txt:1"):
        load_spec(f"ctw1500:{tmp_path}")


def test_totaltext_legacy_and_plain(tmp_path):
    _one_image(tmp_path, "images")
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "poly_gt_0001.txt").write_text(
        "x: [[115 503 494 115]], y: [[322 346 426 404]], ornt: [u'm'], transcriptions: [u'nauGHTY']\n"
        "x: [[10 60 60 10]], y: [[10 10 30 30]], ornt: [u'#'], transcriptions: [u'#']\n"
    )
    s = load_spec(f"totaltext:{tmp_path}")[0]
    assert s.texts == ["nauGHTY", "###"] and s.ignore.tolist() == [False, True]
    np.testing.assert_array_equal(s.polygons[0][1], [503, 346])
    (tmp_path / "gt" / "poly_gt_0001.txt").write_text("1,1,50,1,50,20,1,20,hello, world\n")
    s = load_spec(f"totaltext:{tmp_path}")[0]
    assert s.texts == ["hello, world"] and s.boxes[0].tolist() == [1, 1, 50, 20]


def test_synthetic_curved_text_reads_back_and_bends(tmp_path):
    from regiondet.cli import main
    from regiondet.data.images import load_rgb

    argv = [
        "--quiet",
        "data",
        "synth-curved",
        "--backgrounds",
        f"icdar2015:{ICDAR}?limit=3",
        "--count",
        "4",
        "--out",
        str(tmp_path / "syn"),
        "--seed",
        "1",
        "--crop",
        "400",
    ]
    assert main(argv) == 0
    samples = load_spec(f"totaltext:{tmp_path / 'syn'}")
    assert len(samples) == 4 and all((s.width, s.height) == (400, 400) for s in samples)
    sources = (tmp_path / "syn" / "sources.csv").read_text().split()
    assert sources[0] == "image,background" and len(sources) == 5
    photos = [Path(line.split(",")[1]).resolve() for line in sources[1:]]  # each image's photo, for credit
    assert all(p.is_file() and Path(ICDAR).resolve() in p.parents for p in photos)
    words = [(s, i) for s in samples for i, t in enumerate(s.texts) if t != "###"]
    assert len(words) >= 8
    kept_pairs = []
    for s, i in words:
        poly = s.polygons[i]
        assert poly.shape == (14, 2) and (poly >= 0).all() and (poly <= 400).all()
        kept_pairs.append(len(reduce_pairs(polygon_to_pairs(poly))))
    assert np.mean(kept_pairs) > 3  # curved words need more than the 2 pairs of a quadrilateral
    s, i = words[0]
    pixels = load_rgb(s.path)
    x1, y1, x2, y2 = s.boxes[i].astype(int)
    assert pixels[y1:y2, x1:x2].std() > 10  # something was drawn there


def test_rotation_turns_words_with_the_image():
    """A real ICDAR scene turned 30 degrees: each word's outline still covers the same pixels,
    its top edge turns by the same angle, and the pairs keep their reading order."""
    sample = load_spec(f"icdar2015:{ICDAR}?limit=1")[0]
    data = TextDataset([sample], max_pairs=7)
    pixels = load_rgb(sample.path)
    pairs = [p for p, ig in zip(data.pairs_of(0), sample.ignore, strict=True) if not ig]
    assert pairs
    turned, moved = rotate_sample(pixels, pairs, 30.0)
    h, w = pixels.shape[:2]
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    assert abs(turned.shape[0] - (w * s + h * c)) < 2 and abs(turned.shape[1] - (w * c + h * s)) < 2

    def mean_inside(img, p):
        poly = Polygon(np.concatenate([p[:, 0], p[::-1, 1]])).buffer(-1)
        x0, y0, x1, y1 = (int(v) for v in poly.bounds)
        ys, xs = np.mgrid[y0:y1, x0:x1]
        inside = contains_xy(poly, xs + 0.5, ys + 0.5)
        return img[ys[inside], xs[inside]].mean(0)

    for before, after in zip(pairs, moved, strict=True):
        np.testing.assert_allclose(mean_inside(turned, after), mean_inside(pixels, before), atol=8)
        top0, top1 = before[-1, 0] - before[0, 0], after[-1, 0] - after[0, 0]
        angle = np.degrees(np.arctan2(-top1[1], top1[0]) - np.arctan2(-top0[1], top0[0]))
        assert abs((angle + 180) % 360 - 180 - 30) < 0.5
    assert rotate_sample(pixels, [], -10.0)[1] == []
