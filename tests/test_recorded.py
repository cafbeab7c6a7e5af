"""Detections written once and scored again (`evaluate --save-detections` / `--detections`)."""

from __future__ import annotations

import json

import pytest

from conftest import CAMERA_VALID, ICDAR
from regiondet.cli import main
from regiondet.data.spec import load_spec

HOLDOUT = f"icdar2015:{ICDAR}?part=holdout&fraction=0.2&seed=0&limit=3"
CAMERAS = f"voc:{CAMERA_VALID}?limit=6"


def _evaluate(capsys, *argv: str) -> dict:
    capsys.readouterr()
    assert main(["--quiet", "evaluate", *argv]) == 0
    return json.loads(capsys.readouterr().out)


def test_text_detections_score_again_as_the_model_did(tmp_path, capsys):
    """A text model's saved outlines, read back, give the same figures at every score; so do the
    lines `regiondet detect` prints (text_fast has no nested-box step that its score could move)."""
    saved = tmp_path / "text.jsonl"
    model = _evaluate(capsys, "--model", "text_fast", "--data", HOLDOUT, "--save-detections", str(saved))
    again = _evaluate(capsys, "--detections", str(saved), "--data", HOLDOUT)  # at the score the model was scored at
    assert model["matched"] > 0 and model["det_care"] > 0
    same = ("score", "precision", "recall", "hmean", "matched", "det_care", "by_score", "by_iou", "recall_by_height")
    for key in same:
        assert again[key] == model[key], key
    assert again["latency_ms_median"] == pytest.approx(model["latency_ms_median"], abs=0.5)  # the recorded times
    assert again["model"] == f"detections: {saved}" and "proposal_recall" not in again
    printed = tmp_path / "detect.jsonl"
    capsys.readouterr()
    assert (
        main(
            ["--quiet", "detect", "--model", "text_fast", "--score", "0.3", *[str(s.path) for s in load_spec(HOLDOUT)]]
        )
        == 0
    )
    printed.write_text(capsys.readouterr().out)
    from_detect = _evaluate(capsys, "--detections", str(printed), "--data", HOLDOUT, "--score", str(model["score"]))
    assert (from_detect["matched"], from_detect["det_care"]) == (model["matched"], model["det_care"])


def test_box_detections_with_negatives_score_again(tmp_path, capsys):
    saved = tmp_path / "boxes.jsonl"
    negatives = f"icdar2015:{ICDAR}?part=holdout&fraction=0.2&seed=0&limit=2"
    common = ["--data", CAMERAS, "--negatives", negatives, "--score", "0.5"]
    model = _evaluate(capsys, "--model", "default", *common, "--save-detections", str(saved))
    again = _evaluate(capsys, "--detections", str(saved), *common)
    assert len(saved.read_text().splitlines()) == 6 + 2  # one line per image, negatives too
    for key in ("map50", "coco_ap", "no_detection_rate", "negatives_with_detection_rate", "rates_by_score"):
        assert again[key] == model[key], key


def test_hand_written_detections_give_ap_one_and_zero(tmp_path, capsys):
    """Detections from any tool in detect's form: the true boxes score AP 1, boxes beside them 0;
    a class of the data the file never names is scored too (AP 0), not skipped."""
    samples = [s for s in load_spec(CAMERAS) if len(s.boxes)]
    exact, shifted = tmp_path / "exact.jsonl", tmp_path / "shifted.jsonl"
    exact.write_text(
        "".join(
            json.dumps({"file": str(s.path), "boxes": s.boxes.tolist(), "labels": s.labels}) + "\n" for s in samples
        )
    )
    shifted.write_text(
        "".join(
            json.dumps(
                {
                    "file": str(s.path),
                    "boxes": (s.boxes + 2000).tolist(),
                    "scores": [0.9] * len(s.boxes),
                    "labels": s.labels,
                }
            )
            + "\n"
            for s in samples
        )
    )
    assert _evaluate(capsys, "--detections", str(exact), "--data", CAMERAS)["map50"] == pytest.approx(1.0)
    assert _evaluate(capsys, "--detections", str(shifted), "--data", CAMERAS)["map50"] == 0.0
    renamed = _evaluate(capsys, "--detections", str(exact), "--data", CAMERAS, "--class-map", "camera=lens")
    per_class = renamed["ap50_per_class"]  # the file's class has no object left (NaN, not counted)
    assert per_class["lens"] == 0.0 and renamed["map50"] == 0.0 and sorted(per_class) == ["Camera", "lens"]


def test_a_lens_boxed_as_the_other_class_counts_for_the_alert_not_for_its_class(tmp_path, capsys):
    """Camera photos whose cameras are all boxed as phones: no camera box on any photo, but no
    photo without a lens box (what an alert needs), at every score of the ladder up to 0.9."""
    spec = f"{CAMERAS}&labels=camera"
    samples = [s for s in load_spec(spec) if len(s.boxes)]
    path = tmp_path / "as_phones.jsonl"
    lines = [{"file": str(s.path), "boxes": s.boxes.tolist(), "scores": [0.9] * len(s.boxes)} for s in samples]
    path.write_text("".join(json.dumps({**line, "labels": ["phone"] * len(line["boxes"])}) + "\n" for line in lines))
    res = _evaluate(capsys, "--detections", str(path), "--data", spec, "--score", "0.5")
    assert res["no_detection_rate"] == 1.0 and res["lens_no_detection_rate"] == 0.0
    per_class = {name.lower(): ap for name, ap in res["ap50_per_class"].items()}
    assert res["lens_ap50"] == pytest.approx(1.0) and per_class["camera"] == 0.0
    ladder = res["rates_by_score"]
    assert ladder["0.1"]["lens_no_detection_rate"] == ladder["0.9"]["lens_no_detection_rate"] == 0.0
    assert ladder["0.95"]["lens_no_detection_rate"] == 1.0 and ladder["0.2"]["no_detection_rate"] == 1.0


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "detections file not found"),
        ("", "no detections in the file"),
        ("{not json\n", "detections.jsonl:1: not a line of regiondet detect's JSON"),
        ('{"boxes": []}\n', ":1: not a line"),
        ('{"file": "a.jpg", "boxes": [[0, 0, 1, 1]], "scores": [0.5, 0.6]}\n', ":1: boxes, scores, labels"),
        ('{"file": "a.jpg", "boxes": "x"}\n', ":1: malformed detections"),
        ('{"file": "a.mp4", "frame": 3, "boxes": []}\n', "a video frame"),
        ('{"file": "elsewhere.jpg", "boxes": []}\n', "and 5 more (run detect on every image"),
        ('{"file": "a.jpg", "boxes": [[0, 0, 1, 1]], "scores": [NaN]}\n', ":1: a score or box coordinate"),
        ('{"file": "a.jpg", "boxes": [[9, 0, 1, 1]], "scores": [0.5]}\n', ":1: a box with x2 < x1"),
        ('{"file": "a.jpg", "boxes": []}\n{"file": "./a.jpg", "boxes": []}\n', ":2: a.jpg has a line already (line 1)"),
    ],
)
def test_bad_detection_files_are_one_line_errors(tmp_path, capsys, content, words):
    path = tmp_path / "detections.jsonl"
    if content is not None:
        path.write_text(content)
    capsys.readouterr()
    assert main(["evaluate", "--detections", str(path), "--data", CAMERAS]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the data's own warnings
    assert words in err and "detections.jsonl" in err, err


def test_a_label_no_object_of_the_data_has_is_named(tmp_path, capsys):
    """Boxes labelled with a class the data lacks (a typo, another model's classes) are scored as
    false alarms, and evaluate says which labels, where, in one line."""
    samples = [s for s in load_spec(CAMERAS) if len(s.boxes)]
    path = tmp_path / "typo.jsonl"
    lines = [{"file": str(s.path), "boxes": s.boxes.tolist(), "labels": ["Camrea"] * len(s.boxes)} for s in samples]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    res = _evaluate(capsys, "--detections", str(path), "--data", CAMERAS)
    assert res["ap50_per_class"]["Camera"] == 0.0
    main(["--quiet", "evaluate", "--detections", str(path), "--data", CAMERAS])
    err = [line for line in capsys.readouterr().err.splitlines() if "no object of the data has" in line]
    assert err == [f"regiondet: {path}: labels no object of the data has, scored as false alarms: 'Camrea' (line 1)"]


def test_detections_and_a_model_together_are_refused(tmp_path, capsys):
    path = tmp_path / "d.jsonl"
    path.write_text('{"file": "a.jpg", "boxes": []}\n')
    capsys.readouterr()
    assert main(["evaluate", "--detections", str(path), "--model", "default", "--data", CAMERAS]) == 2
    assert "leave out --model" in capsys.readouterr().err


def test_confusion_counts_what_each_object_was_called(tmp_path, capsys):
    """Camera photos (a camera-only source): the first photo's cameras boxed as phones, the
    others' as cameras, a stray camera box on the second photo (a false alarm) and a stray phone
    box on the third (the source does not box phones: counted nowhere); one street scene with a
    phone box (a false alarm). Every object lands in exactly one cell."""
    spec = f"{CAMERAS}&labels=camera"
    samples = [s for s in load_spec(spec) if len(s.boxes)][:3]
    far = [[0.0, 0.0, 3.0, 3.0]]  # a corner box no camera occupies
    lines = [
        {"boxes": samples[0].boxes.tolist(), "labels": ["phone"] * len(samples[0].boxes)},
        {"boxes": samples[1].boxes.tolist() + far, "labels": ["camera"] * (len(samples[1].boxes) + 1)},
        {"boxes": samples[2].boxes.tolist() + far, "labels": ["camera"] * len(samples[2].boxes) + ["phone"]},
    ]
    scene = load_spec(HOLDOUT)[0]  # the other photos and scenes: no box
    path = tmp_path / "mixed.jsonl"
    scored = zip(samples, lines, strict=True)
    rows = [{"file": str(s.path), **line, "scores": [0.9] * len(line["boxes"])} for s, line in scored]
    rows.append({"file": str(scene.path), "boxes": far, "labels": ["phone"], "scores": [0.8]})
    done = {r["file"] for r in rows}
    empty = {"boxes": [], "labels": [], "scores": []}
    rows += [{"file": str(s.path), **empty} for s in load_spec(spec) + load_spec(HOLDOUT) if str(s.path) not in done]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = _evaluate(capsys, "--detections", str(path), "--data", spec, "--negatives", HOLDOUT, "--score", "0.5")
    cells = {t.lower(): {p.lower(): n for p, n in row.items()} for t, row in res["confusion"].items()}
    n0, rest = len(samples[0].boxes), len(samples[1].boxes) + len(samples[2].boxes)
    unboxed = sum(int((~s.ignore).sum()) for s in load_spec(spec)) - n0 - rest  # the photos with no line
    assert cells["camera"] == {"camera": rest, "phone": n0, "background": unboxed}
    assert cells["background"]["camera"] == 1 and cells["background"]["phone"] == 1
    strict = _evaluate(capsys, "--detections", str(path), "--data", spec, "--negatives", HOLDOUT, "--score", "0.95")
    missed = {t.lower(): row for t, row in strict["confusion"].items()}["camera"]
    assert sum(missed.values()) == missed["background"] == n0 + rest + unboxed  # nothing at 0.95: all missed
