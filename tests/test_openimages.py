"""The thesis's Open Images preprocessing on small CSVs, and an offline (file://) download."""

from __future__ import annotations

import shutil

import pytest

from conftest import CAMERA_VALID
from regiondet.cli import main
from regiondet.data.formats.openimages import download_openimages, prepare_openimages
from regiondet.data.spec import load_spec
from regiondet.errors import UserError

BOX_HEADER = (
    "ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,IsTruncated,IsGroupOf,IsDepiction,IsInside"
)


@pytest.fixture
def csvs(tmp_path):
    photos = sorted(CAMERA_VALID.glob("*.jpg"))[:12]
    src = tmp_path / "src"
    src.mkdir()
    ids = [f"{i:016x}" for i in range(12)]
    for i, p in zip(ids, photos, strict=True):
        shutil.copy(p, src / f"{i}.jpg")
    (tmp_path / "desc.csv").write_text("/m/cam,Camera\n/m/phone,Mobile phone\n/m/cup,Coffee cup\n")
    rows = [BOX_HEADER]
    for k, i in enumerate(ids):
        group = "1" if k == 0 else "0"
        rows.append(f"{i},xclick,/m/cam,1,0.1,0.5,0.2,0.6,0,0,{group},0,0")
        if k % 3 == 0:
            rows.append(f"{i},xclick,/m/phone,1,0.6,0.9,0.1,0.3,0,0,0,0,0")
        rows.append(f"{i},xclick,/m/cup,1,0.0,0.1,0.0,0.1,0,0,0,0,0")
    (tmp_path / "boxes.csv").write_text("\n".join(rows) + "\n")
    images = ["ImageID,Subset,OriginalURL"] + [f"{i},train,{(src / f'{i}.jpg').as_uri()}" for i in ids]
    (tmp_path / "images.csv").write_text("\n".join(images) + "\n")
    return tmp_path


def test_prepare_download_read(csvs):
    out = csvs / "oi"
    counts = prepare_openimages(
        csvs / "desc.csv",
        csvs / "boxes.csv",
        csvs / "images.csv",
        ["camera", "Mobile phone"],
        out,
        exclude=("IsGroupOf",),
        sample=10,
        test_fraction=0.2,
        seed=3,
    )
    assert counts == {"train": 8, "test": 2}
    with pytest.raises(UserError, match="not downloaded"):
        load_spec(f"openimages:{out}:train")
    fetched, skipped, failures = download_openimages(out, workers=2)
    assert (fetched, skipped, failures) == (10, 0, [])
    assert download_openimages(out)[:2] == (0, 10)  # resumable: nothing fetched twice
    train = load_spec(f"openimages:{out}:train")
    test = load_spec(f"openimages:{out}:test")
    assert len(train) == 8 and len(test) == 2
    assert not {s.path for s in train} & {s.path for s in test}
    assert "0000000000000000" not in {s.path.stem for s in train + test}  # group-of image dropped
    labels = {lab for s in train + test for lab in s.labels}
    assert labels <= {"Camera", "Mobile phone"} and "Camera" in labels
    s = train[0]
    assert s.boxes[0][0] == pytest.approx(0.1 * s.width)


def test_same_seed_same_selection(csvs):
    trio = (csvs / "desc.csv", csvs / "boxes.csv", csvs / "images.csv", ["Camera"])
    a = prepare_openimages(*trio, csvs / "a", sample=5, seed=1)
    b = prepare_openimages(*trio, csvs / "b", sample=5, seed=1)
    assert a == b
    assert (csvs / "a" / "manifest.csv").read_text() == (csvs / "b" / "manifest.csv").read_text()


def test_unknown_display_name(csvs, capsys):
    argv = [
        "data",
        "openimages",
        "--descriptions",
        str(csvs / "desc.csv"),
        "--boxes",
        str(csvs / "boxes.csv"),
        "--images",
        str(csvs / "images.csv"),
        "--classes",
        "Tripod",
        "--out",
        str(csvs / "x"),
    ]
    assert main(argv) == 2
    assert "Tripod" in capsys.readouterr().err
