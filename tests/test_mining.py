"""Hard negatives mined from a model's false alarms come back as a training source."""

from __future__ import annotations

from conftest import CAMERA_VALID, ICDAR, main
from regiondet.data.spec import load_spec


def test_mined_false_alarms_are_a_txt_spec_of_object_free_images(trained_run, tmp_path, capsys):
    out = tmp_path / "mined" / "negatives.txt"
    pool = f"icdar2015:{ICDAR}?limit=6"
    argv = [
        "--quiet",
        "data",
        "mine-negatives",
        "--negatives",
        pool,
        "--model",
        str(trained_run / "best.pt"),
        "--score",
        "0.01",
    ]
    assert main([*argv, "--out", str(out)]) == 0
    assert "written to" in capsys.readouterr().out
    mined = load_spec(f"txt:{out}")
    names = {s.path.resolve() for s in load_spec(pool)}
    assert mined and all(s.is_negative and s.path.resolve() in names for s in mined)  # street scenes: no objects
    scores = [float(line.split()[1]) for line in out.read_text().splitlines()[2:] if line.startswith("# ")]
    assert len(scores) == len(mined) and scores == sorted(scores, reverse=True) and min(scores) >= 0.01
    assert main([*argv[:-1], "1", "--out", str(tmp_path / "none.txt")]) == 0  # nothing fires: an empty list
    assert "0 of 6 images" in (tmp_path / "none.txt").read_text()


def test_labelled_pool_keeps_objects_and_counts_only_real_false_alarms(trained_run, tmp_path):
    """A labelled image is listed with its boxes; a box on its object is not a false alarm."""
    out = tmp_path / "hard.txt"
    spec = f"voc:{CAMERA_VALID}?limit=6"
    argv = ["--quiet", "data", "mine-negatives", spec, "--model", str(trained_run / "best.pt"), "--score", "0.01"]
    assert main([*argv, "--out", str(out)]) == 0
    mined = load_spec(f"txt:{out}")
    truth = {s.path.resolve(): s for s in load_spec(spec)}
    assert mined and all(len(s.boxes) == len(truth[s.path.resolve()].boxes) for s in mined)
    assert main(["--quiet", "data", "mine-negatives", "--out", str(out)]) == 2  # nothing to search
