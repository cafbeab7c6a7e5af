"""detect on videos made from real webcam frames, sub-folders, and bad video files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from conftest import CAMERA_VALID, DATA
from regiondet.cli import main

FRAMES = DATA / "phone-webcam" / "valid" / "images"


def webcam_video(path: Path, count: int = 6, fps: float = 5.0) -> list[np.ndarray]:
    """An .mp4 of real webcam frames in recording order; returns the RGB frames written."""
    files = sorted(FRAMES.glob("*.jpg"), key=lambda f: int(re.search(r"frame_(\d+)", f.name).group(1)))[:count]
    frames = [np.asarray(Image.open(f).convert("RGB").resize((320, 320))) for f in files]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (320, 320))
    for f in frames:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    writer.release()
    return frames


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_video_every_second_frame_gives_lines_and_a_drawn_video(trained_run, tmp_path, capsys):
    video = tmp_path / "clip.mp4"
    webcam_video(video, count=7)
    out = tmp_path / "out"
    model = str(trained_run / "best.pt")
    assert main(["detect", str(video), "--model", model, "--stride", "2", "--score", "0", "--out", str(out)]) == 0
    lines = json_lines(capsys.readouterr().out)
    assert [x["frame"] for x in lines] == [0, 2, 4, 6]
    np.testing.assert_allclose([x["time_s"] for x in lines], [0, 0.4, 0.8, 1.2], atol=1e-3)
    assert all(x["file"] == str(video) and len(x["boxes"]) == len(x["scores"]) for x in lines)
    drawn = cv2.VideoCapture(str(out / "clip.mp4"))
    assert int(drawn.get(cv2.CAP_PROP_FRAME_COUNT)) == 4 and drawn.get(cv2.CAP_PROP_FPS) == 2.5
    ok, first = drawn.read()
    drawn.release()
    assert ok and first.shape == (320, 320, 3)
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4"]  # no temporary file left


def test_video_frames_match_detection_on_the_decoded_frames(trained_run, tmp_path, capsys):
    from regiondet import Detector
    from regiondet.inference.sources import read_frames

    video = tmp_path / "clip.mp4"
    webcam_video(video, count=3)
    det = Detector.load(trained_run / "best.pt", score=0.0)
    decoded = [frame for _, _, frame in read_frames(video)]
    assert len(decoded) == 3
    assert main(["detect", str(video), "--model", str(trained_run / "best.pt"), "--score", "0"]) == 0
    for line, frame in zip(json_lines(capsys.readouterr().out), decoded, strict=True):
        np.testing.assert_allclose(line["scores"], det.predict(frame).scores.round(4), atol=1e-3)


def test_corrupt_video_is_skipped_and_sub_folders_need_recursive(trained_run, tmp_path, capsys):
    model = str(trained_run / "best.pt")
    bad = tmp_path / "in" / "broken.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    assert main(["detect", str(bad), "--model", model]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "broken.mp4" in err[0] and "skipped" in err[0] and "could be read" in err[1]
    photos = sorted(CAMERA_VALID.glob("*.jpg"))[:2]
    for sub, photo in zip(("a", "b"), photos, strict=True):  # the same file name in two sub-folders
        (tmp_path / "in" / sub).mkdir()
        shutil.copy(photo, tmp_path / "in" / sub / "photo.jpg")
    out = tmp_path / "out"
    assert main(["detect", str(tmp_path / "in"), "--model", model, "--out", str(out)]) != 0
    capsys.readouterr()
    assert main(["detect", str(tmp_path / "in"), "-r", "--model", model, "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert len(json_lines(printed.out)) == 2 and "broken.mp4" in printed.err
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg")) == ["a/photo.jpg", "b/photo.jpg"]
    assert main(["detect", str(bad), "--model", model, "--stride", "0"]) != 0
    assert "--stride" in capsys.readouterr().err


def phone_then_streets(path: Path, phone_frames: int = 5, street_frames: int = 4, fps: float = 5.0) -> None:
    """An .mp4 of a real phone photo drifting across 5 frames, then real street scenes."""
    photo = Image.open(sorted((DATA / "phone-photos" / "cellphone" / "test" / "images").glob("*.jpg"))[0])
    photo = photo.convert("RGB").resize((416, 416))
    frames = [np.asarray(photo.crop((8 * i, 0, 8 * i + 384, 384)).resize((320, 320))) for i in range(phone_frames)]
    streets = sorted((DATA / "icdar2015" / "images").glob("*.jpg"))[:street_frames]
    frames += [np.asarray(Image.open(f).convert("RGB").resize((320, 320))) for f in streets]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (320, 320))
    for f in frames:
        writer.write(np.ascontiguousarray(f[:, :, ::-1]))
    writer.release()


def test_the_alert_follows_one_tracked_phone_and_its_events_are_written(tmp_path, capsys):
    """The shipped model on real frames: the phone is one track; its alert starts at its second
    frame (2/3) and ends once it has been out of view for the hold (0.3 s); --events gets both."""
    video = tmp_path / "clip.mp4"
    phone_then_streets(video)
    events = tmp_path / "events.jsonl"
    argv = ["detect", str(video), "--alert", "2/3", "--alert-hold", "0.3", "--events", str(events)]
    assert main([*argv, "--runtime", "torch"]) == 0
    printed = capsys.readouterr()
    lines = json_lines(printed.out)
    assert [x["alert"] for x in lines] == [False, True, True, True, True, True, False, False, False]
    tracks = {t for x in lines[:5] for t, label in zip(x["tracks"], x["labels"], strict=True) if label == "phone"}
    assert tracks == {1}  # the same phone all along
    written = [json.loads(line) for line in events.read_text().splitlines()]
    assert [(e["event"], e["track"], e["label"], e["frame"]) for e in written] == [
        ("alert_start", 1, "phone", 1),
        ("alert_end", 1, "phone", 6),
    ]
    assert written[1]["first_time_s"] == 0 and written[1]["last_time_s"] == 0.8 and written[1]["file"] == str(video)
    assert written[1]["episode_start_s"] == 0.2 and written[1]["duration_s"] == 0.6
    assert printed.err.count("regiondet: alert: phone (track 1) at frame 1 (0.2 s)") == 1
    assert main([*argv, "--runtime", "torch"]) == 0
    assert len(events.read_text().splitlines()) == 4  # appended, the first run's lines kept
    for bad in ("3", "4/3", "0/2", "a/b"):
        assert main(["detect", str(video), "--alert", bad]) != 0
        assert "--alert" in capsys.readouterr().err
    for bad in ("-1", "nan"):
        assert main(["detect", str(video), "--alert", "2/3", "--alert-hold", bad]) == 2
        assert "hold" in capsys.readouterr().err


def test_live_reader_gives_only_the_newest_frame(tmp_path):
    """A camera or stream read while the detector is busy: the backlog is skipped, not queued."""
    from regiondet.inference.sources import LiveReader, read_frames

    video = tmp_path / "clip.mp4"
    webcam_video(video, count=8)
    decoded = [frame for _, _, frame in read_frames(video)]
    reader = LiveReader(video)  # a file stands in for a live source: it is read as fast as it decodes
    reader._thread.join()  # the detector was busy until every frame had arrived
    (index, _, frame), *rest = list(reader)
    assert index == 7 and rest == []
    np.testing.assert_array_equal(frame, decoded[7])
    given = list(LiveReader(video))  # read while frames arrive: in order, ending at the newest
    indices = [i for i, _, _ in given]
    assert indices == sorted(set(indices)) and indices[-1] == 7
    for i, _, f in given:
        np.testing.assert_array_equal(f, decoded[i])


def test_live_source_drawn_video_keeps_real_time(trained_run, tmp_path, capsys, monkeypatch):
    """Frames skipped while detecting are filled with the last drawn frame, at the source rate."""
    from regiondet.inference import sources as sources_module

    clip = tmp_path / "clip.mp4"
    webcam_video(clip, count=8, fps=5.0)
    monkeypatch.setattr(sources_module, "is_live", lambda source: True)  # read the file as a camera
    out = tmp_path / "out"
    assert main(["detect", str(clip), "--model", str(trained_run / "best.pt"), "--out", str(out)]) == 0
    frames = [x["frame"] for x in json_lines(capsys.readouterr().out)]
    assert frames == sorted(set(frames)) and frames[-1] == 7
    drawn = cv2.VideoCapture(str(out / "clip.mp4"))
    count, fps = int(drawn.get(cv2.CAP_PROP_FRAME_COUNT)), drawn.get(cv2.CAP_PROP_FPS)
    drawn.release()
    assert fps == 5.0 and count == 8 - frames[0]  # from the first frame detected to the last
    assert main(["detect", str(clip), "--model", str(trained_run / "best.pt"), "--stride", "2"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "add --buffered" in err[0]  # refused before any source opens


def test_a_missing_camera_is_one_line(trained_run, capsys):
    assert main(["detect", "7", "--model", str(trained_run / "best.pt")]) != 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("regiondet")]
    assert err[0] == "regiondet: skipped: cannot open camera 7 (no such device, or in use)"


def test_a_garbled_video_is_read_to_the_end_with_one_line_saying_it_is_damaged(trained_run, tmp_path, capfd):
    """An MP4 with bytes overwritten in three places: every frame still gets its line, FFmpeg's
    own complaints (about 20 lines) stay off the terminal, and one line of ours says how many
    frames the decoder found damaged."""
    model = str(trained_run / "best.pt")
    mp4 = tmp_path / "whole.mp4"
    webcam_video(mp4, count=12)
    data = bytearray(mp4.read_bytes())
    rng = np.random.default_rng(0)
    for k in range(3):
        at = int(len(data) * (0.3 + 0.2 * k))
        data[at : at + 400] = rng.integers(0, 256, 400, dtype=np.uint8).tobytes()
    garbled = tmp_path / "garbled.mp4"
    garbled.write_bytes(bytes(data))
    capfd.readouterr()
    assert main(["--quiet", "detect", str(garbled), "--model", model]) == 0
    out, err = capfd.readouterr()
    assert len(json_lines(out)) == 12
    lines = err.strip().splitlines()
    assert len(lines) == 1 and re.search(r"garbled.mp4: the decoder reported damage at \d+ frame", lines[0]), lines
    assert main(["--quiet", "detect", str(mp4), "--model", model]) == 0
    assert capfd.readouterr().err.strip() == ""  # the whole file: nothing to say


def test_truncated_video_says_how_many_frames_it_gave_and_library_noise_is_silenced(trained_run, tmp_path, capfd):
    """An AVI cut in half announces all its frames but ends early: say so. A cut MP4 (no index)
    cannot open: one line of ours, none of FFmpeg's ('moov atom not found')."""
    model = str(trained_run / "best.pt")
    files = sorted(FRAMES.glob("*.jpg"))[:12]
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (160, 160))
    for f in files:
        writer.write(np.ascontiguousarray(np.asarray(Image.open(f).convert("RGB").resize((160, 160)))[:, :, ::-1]))
    writer.release()
    data = whole.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 2])
    assert main(["--quiet", "detect", str(tmp_path / "cut.avi"), "--model", model]) == 0
    out, err = capfd.readouterr()
    done = len(json_lines(out))
    assert 0 < done < 12
    assert f"ended after {done} of the 12 frames its container announces" in err
    assert all(line.startswith("regiondet: ") for line in err.strip().splitlines()), err  # no "[mjpeg] overread"
    assert main(["--quiet", "detect", str(whole), "--model", model]) == 0
    assert "announces" not in capfd.readouterr().err  # a whole file: no notice
    mp4 = tmp_path / "whole.mp4"
    webcam_video(mp4)
    (tmp_path / "cut.mp4").write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    assert main(["--quiet", "detect", str(tmp_path / "cut.mp4"), "--model", model]) == 2
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "cut.mp4" in err[0] and all(line.startswith("regiondet:") for line in err)


def test_benchmark_alerts_on_clips_made_from_real_photos(tmp_path, capsys):
    """Three phone photos between street scenes: each alerts while its phone is in view, never
    before the K-th frame of it. (Photos the default model finds at its score: two of the first
    four it does not, since its crop verifier, and a clip cannot alert on a phone never seen.)"""
    out = tmp_path / "alerts.json"
    phones = "yolo:" + str(DATA / "phone-photos" / "cellphone" / "data.yaml") + ":test?labels=phone&skip=4&limit=3"
    streets = f"icdar2015:{DATA / 'icdar2015'}?part=holdout&fraction=0.2&seed=0&limit=3"
    argv = ["--quiet", "benchmark", "alerts", "--lens", phones, "--negatives", streets, "--alert", "3/5"]
    assert main([*argv, "--runtime", "torch", "--json", str(out), "--long-clips", "1"]) == 0
    res = json.loads(out.read_text())
    assert res["lens_clips"] == 3 and res["lens_clips_alerted"] == 3
    assert res["lens_clips_alerted_within_1s"] == 3 and res["hold_s"] == 2.0
    # one phone in view for 5-20 s, shaken frame to frame: one alert for the one appearance
    assert res["long_clips"] == 1 and 5 <= res["long_clip_seconds_median"] <= 20
    assert res["long_alert_starts_per_appearance"] == 1 and res["long_clips_alerted_within_1s"] == 1
    assert 0.5 < res["long_lens_frames_detected"] <= 1
    assert res["frames_to_alert_median"] >= 2  # 3 of 5: the third frame with the lens at the earliest
    assert res["lens_free_clips"] == 1 and res["lens_free_minutes"] == 30 / 10 / 60
    assert res["alerts_per_lens_free_minute"] == res["alerts_without_lens"] / res["lens_free_minutes"]
    assert "| lens clips with an alert while the lens is in view | 3 of 3 |" in capsys.readouterr().out


def test_benchmark_alerts_at_several_scores_runs_the_model_once_and_agrees_with_single_runs(tmp_path, capsys):
    """`--score 0.3 0.9`: the figures side by side, each equal to a run at that score alone."""
    phones = "yolo:" + str(DATA / "phone-photos" / "cellphone" / "data.yaml") + ":test?labels=phone&skip=4&limit=2"
    streets = f"icdar2015:{DATA / 'icdar2015'}?part=holdout&fraction=0.2&seed=0&limit=3"
    argv = ["--quiet", "benchmark", "alerts", "--lens", phones, "--negatives", streets, "--runtime", "torch"]
    both, single = tmp_path / "both.json", tmp_path / "single.json"
    assert main([*argv, "--score", "0.3", "0.9", "--json", str(both)]) == 0
    table = capsys.readouterr().out
    assert "| score 0.3 | score 0.9 |" in table
    assert main([*argv, "--score", "0.9", "--json", str(single)]) == 0
    by_score = json.loads(both.read_text())["by_score"]
    alone = json.loads(single.read_text())
    timing = {"ms_per_frame_median"}
    for key, value in by_score["0.9"].items():
        if key not in timing:
            assert alone[key] == value, key
    assert by_score["0.3"]["lens_clips_alerted"] >= by_score["0.9"]["lens_clips_alerted"]
    assert by_score["0.3"]["lens_clips_alerted"] == 2
