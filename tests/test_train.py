"""Training on real camera photos: the loss falls, runs resume, Ctrl-C leaves a resumable run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_config, write_config
from regiondet.cli import main
from regiondet.engine.history import COLUMNS, TEXT_ONLY, read_history
from regiondet.models.checkpoint import read_checkpoint


def test_loss_falls_and_run_folder_is_complete(trained_run):
    rows = read_history(trained_run / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["loss_total"] < rows[0]["loss_total"]
    for key in COLUMNS:
        assert (rows[-1][key] is None) == (key in TEXT_ONLY), key
    assert rows[-1]["rpn_overlapping_proposals"] >= 0
    assert 0 < rows[-1]["head_accuracy"] <= 1
    for name in ("config.yaml", "curves.png", "pr_curve.png", "last.pt", "best.pt"):
        assert (trained_run / name).is_file(), name
    ckpt = read_checkpoint(trained_run / "last.pt")
    assert ckpt["epoch"] == 3 and "optimizer" in ckpt


def test_same_seed_same_weights(tmp_path):
    outs = []
    for name in ("a", "b"):
        cfg = tiny_config(tmp_path / name, epochs=1, steps_per_epoch=2)
        cfg["data"]["val"] = []
        assert main(["--quiet", "train", str(write_config(tmp_path / f"{name}.yaml", cfg))]) == 0
        outs.append(read_checkpoint(tmp_path / name / "last.pt")["model"])
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])


def test_refuses_to_overwrite_and_resume_extends(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run", epochs=1, steps_per_epoch=2)
    cfg["data"]["val"] = []
    path = write_config(tmp_path / "c.yaml", cfg)
    assert main(["--quiet", "train", str(path)]) == 0
    first = read_history(tmp_path / "run" / "metrics.csv")
    assert main(["--quiet", "train", str(path)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["--quiet", "train", str(path), "--resume", "--set", "train.epochs=2"]) == 0
    rows = read_history(tmp_path / "run" / "metrics.csv")
    assert [r["epoch"] for r in rows] == [1, 2] and rows[0] == first[0]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(
    "signum, code, words", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "stopped (SIGTERM)")]
)
def test_interrupt_saves_and_resume_finishes(tmp_path, signum, code, words):
    """Ctrl-C, or SIGTERM from a scheduler: the run saves, says how to resume, and exits as a
    shell reports that signal (130, 143)."""
    cfg = tiny_config(tmp_path / "run", epochs=2, steps_per_epoch=40, workers=1)
    cfg["data"]["val"] = []
    path = write_config(tmp_path / "c.yaml", cfg)
    proc = subprocess.Popen(
        [sys.executable, "-m", "regiondet.cli", "train", str(path)],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    seen = ""
    deadline = time.time() + 300
    while "3/40" not in seen and time.time() < deadline:  # a few steps done
        seen += proc.stderr.read(1)
    proc.send_signal(signum)
    err = seen + proc.communicate(timeout=300)[1]
    assert proc.returncode == code, err
    assert "resume with" in err and "Traceback" not in err and err.strip().splitlines()[-1] == f"regiondet: {words}"
    ckpt = read_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["epoch"] == 0 and 3 <= ckpt["step_in_epoch"] < 40
    cfg["train"]["steps_per_epoch"] = 40
    assert (
        main(["--quiet", "train", str(path), "--resume", "--set", "train.steps_per_epoch=5", "--set", "train.epochs=1"])
        == 0
    )
    assert [r["epoch"] for r in read_history(tmp_path / "run" / "metrics.csv")] == [1]


def test_corrupt_image_mid_training_is_one_line_and_saves(tmp_path, capsys):
    import shutil

    from conftest import CAMERA_TRAIN

    data = tmp_path / "voc"
    data.mkdir()
    for img in sorted(CAMERA_TRAIN.glob("*.jpg"))[:4]:
        shutil.copy(img, data / img.name)
        shutil.copy(img.with_suffix(".xml"), data / img.with_suffix(".xml").name)
    bad = sorted(data.glob("*.jpg"))[2]
    bad.write_bytes(bad.read_bytes()[:400])
    cfg = tiny_config(tmp_path / "run", epochs=1, steps_per_epoch=4, batch_size=1, workers=1)
    cfg["data"] = {"train": [f"voc:{data}"], "val": []}
    assert main(["--quiet", "train", str(write_config(tmp_path / "c.yaml", cfg))]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("regiondet: error: ") and bad.name in err and "Traceback" not in err
    assert read_checkpoint(tmp_path / "run" / "last.pt")["epoch"] == 0


def test_fine_tune_from_a_model_with_other_classes(tmp_path, capsys, trained_run):
    """train.init copies every fitting tensor; the class layers of a 2-class model start new."""
    cfg = tiny_config(tmp_path / "ft", epochs=1, steps_per_epoch=1, lr=0.0, init=str(trained_run / "best.pt"))
    cfg["model"]["classes"] = ["camera", "phone"]
    cfg["data"]["val"] = []
    assert main(["--quiet", "train", str(write_config(tmp_path / "ft.yaml", cfg))]) == 0
    err = capsys.readouterr().err
    assert f"init from {trained_run / 'best.pt'}" in err and "new: roi_heads.box_predictor.bbox_pred.bias" in err
    start = read_checkpoint(trained_run / "best.pt")["model"]
    tuned = read_checkpoint(tmp_path / "ft" / "last.pt")["model"]
    for key in ("roi_heads.box_head.fc6.weight", "rpn.head.conv.0.0.weight"):
        torch.testing.assert_close(tuned[key], start[key])  # lr 0: the copied weights are untouched
    assert tuned["roi_heads.box_predictor.cls_score.weight"].shape[0] == 3
    cfg["train"].update(out=str(tmp_path / "bad"), init=str(tmp_path / "ft.yaml"))
    assert main(["--quiet", "train", str(write_config(tmp_path / "bad.yaml", cfg))]) == 2
    assert "ft.yaml" in capsys.readouterr().err


def test_fine_tune_refuses_a_trunk_made_under_other_padding_rules(tmp_path, capsys, trained_run):
    """A checkpoint of a PyTorch-padded trunk fine-tuned as a TensorFlow-padded one (model.weights:
    coco-ssd) would start from shifted features: refused before any data loads, naming both rules."""
    cfg = tiny_config(tmp_path / "ft", epochs=1, steps_per_epoch=1, init=str(trained_run / "best.pt"))
    cfg["model"]["weights"] = "coco-ssd"
    assert main(["--quiet", "train", str(write_config(tmp_path / "ft.yaml", cfg))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "best.pt" in err[0] and "TensorFlow padding" in err[0] and "PyTorch padding" in err[0]
    assert not (tmp_path / "ft" / "last.pt").exists()


def test_select_picks_best_by_one_class_and_logs_each_class(tmp_path, capsys):
    """With two classes the per-class AP is logged each epoch, and `train.select: ap50:camera`
    makes best.pt the epoch with the best camera AP, whatever the mean does."""
    from conftest import PHONE_YAML

    cfg = tiny_config(tmp_path / "run", select="ap50:camera")
    cfg["model"]["classes"] = ["camera", "phone"]
    cfg["data"]["train"].append(f"yolo:{PHONE_YAML}:train?limit=6")
    cfg["data"]["val"].append(f"yolo:{PHONE_YAML}:val?limit=4")
    cfg["data"]["class_map"] = {"airpods": None, "wallet": None}
    capsys.readouterr()
    assert main(["--quiet", "train", str(write_config(tmp_path / "c.yaml", cfg))]) == 0
    rows = read_history(tmp_path / "run" / "metrics.csv")
    camera = [r["val_ap50_camera"] for r in rows]
    assert len(camera) == 3 and all(r["val_ap50_phone"] is not None for r in rows)
    best = read_checkpoint(tmp_path / "run" / "best.pt")
    assert best["epoch"] == 1 + camera.index(max(camera))
    bad = tiny_config(tmp_path / "bad", select="ap50:dog")
    assert main(["train", str(write_config(tmp_path / "bad.yaml", bad))]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "train.select 'ap50:dog'" in err and "ap50:CLASS" in err


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_resume_after_a_stop_is_bit_identical_to_a_straight_run(tmp_path, monkeypatch):
    """Stopped after step 3 of epoch 1 (Ctrl-C), then resumed: the same weights, to the bit,
    and epoch 1's metrics count all six steps. Augmentation on, one loader worker."""
    import regiondet.engine.train as train_module

    def run(name: str, stop_at: int | None) -> Path:
        cfg = tiny_config(tmp_path / name, epochs=2, steps_per_epoch=6, workers=1, photometric=0.5)
        cfg["data"]["val"] = []
        path = write_config(tmp_path / f"{name}.yaml", cfg)
        build = train_module.build_model
        calls = {"n": 0}

        def build_with_stop(*args, **kwargs):
            model = build(*args, **kwargs)

            def hook(module, inputs, output):
                calls["n"] += module.training
                if module.training and calls["n"] == stop_at:
                    os.kill(os.getpid(), signal.SIGINT)  # as Ctrl-C: the step finishes, then it saves

            model.register_forward_hook(hook)
            return model

        monkeypatch.setattr(train_module, "build_model", build_with_stop)
        if stop_at:
            assert main(["--quiet", "train", str(path)]) == 130
            assert read_checkpoint(tmp_path / name / "last.pt")["step_in_epoch"] == stop_at
            monkeypatch.setattr(train_module, "build_model", build)
            assert main(["--quiet", "train", str(path), "--resume"]) == 0
        else:
            assert main(["--quiet", "train", str(path)]) == 0
        return tmp_path / name

    straight, resumed = run("straight", None), run("resumed", 3)
    a, b = read_checkpoint(straight / "last.pt")["model"], read_checkpoint(resumed / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ra, rb = read_history(straight / "metrics.csv"), read_history(resumed / "metrics.csv")
    for key in ("loss_total", "loss_classifier", "head_accuracy", "rpn_overlapping_proposals"):
        assert [r[key] for r in ra] == pytest.approx([r[key] for r in rb], rel=1e-6), key


def test_export_averages_checkpoints_of_one_run(trained_run, tmp_path, capsys):
    a, b = read_checkpoint(trained_run / "best.pt")["model"], read_checkpoint(trained_run / "last.pt")["model"]
    out = tmp_path / "avg.pt"
    argv = [
        "--quiet",
        "export",
        str(trained_run / "best.pt"),
        str(out),
        "--fp32",
        "--average",
        str(trained_run / "last.pt"),
    ]
    assert main(argv) == 0
    avg = read_checkpoint(out)["model"]
    key = "roi_heads.box_predictor.cls_score.weight"
    assert torch.allclose(avg[key], (a[key] + b[key]) / 2, atol=1e-6)
    other = tiny_config(tmp_path / "other", epochs=1, steps_per_epoch=1)
    other["model"]["classes"] = ["camera", "phone"]
    other["data"]["class_map"] = {}
    assert main(["--quiet", "train", str(write_config(tmp_path / "o.yaml", other))]) == 0
    capsys.readouterr()
    assert main([*argv[:-1], str(tmp_path / "other" / "last.pt")]) == 2
    assert "cannot average with a different model" in capsys.readouterr().err
