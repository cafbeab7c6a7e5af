"""Config files that inherit (`base:`): what a child replaces, where paths resolve, and the errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regiondet.cli import main
from regiondet.config import load_config
from regiondet.errors import UserError
from regiondet.experiments.grid import load_grid

ROOT = Path(__file__).resolve().parents[1]


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_child_replaces_keys_and_whole_lists(tmp_path):
    _write(
        tmp_path / "base.yaml",
        "model:\n  backbone: vgg16\n  classes: [camera, phone]\n  min_size: 320\ntrain:\n  lr: 0.001\n  epochs: 8\n",
    )
    child = _write(
        tmp_path / "stage2" / "child.yaml", "base: ../base.yaml\nmodel:\n  classes: [camera]\ntrain:\n  lr: 0.0001\n"
    )
    cfg = load_config(child)
    assert cfg.model.backbone == "vgg16" and cfg.model.min_size == 320  # kept from the base
    assert cfg.model.classes == ["camera"]  # a list is replaced, not appended to
    assert cfg.train.lr == 0.0001 and cfg.train.epochs == 8


def test_chain_of_three_and_command_line_overrides_last(tmp_path):
    _write(tmp_path / "a.yaml", "model:\n  backbone: vgg16\ntrain:\n  epochs: 1\n  seed: 5\n")
    _write(tmp_path / "b.yaml", "base: a.yaml\ntrain:\n  epochs: 2\n")
    c = _write(tmp_path / "c.yaml", "base: b.yaml\ntrain:\n  epochs: 3\n")
    cfg = load_config(c, ["train.seed=9"])
    assert (cfg.model.backbone, cfg.train.epochs, cfg.train.seed) == ("vgg16", 3, 9)


def test_shipped_stage_two_states_only_its_changes():
    """The shipped `text` model's second stage is its first stage with five training values changed."""
    one = load_config(ROOT / "configs" / "text_atrr_craft_decoder_ladder.yaml").to_dict()
    two = load_config(ROOT / "configs" / "text_atrr_craft_decoder_ladder_more.yaml").to_dict()
    assert one["model"] == two["model"] and one["data"] == two["data"]
    changed = {k for k in one["train"] if one["train"][k] != two["train"][k]}
    assert changed == {"out", "init", "epochs", "lr", "warmup_steps", "seed"}
    assert two["train"]["lr"] == one["train"]["lr"] / 2


@pytest.mark.parametrize(
    "files, message",
    [
        ({"c.yaml": "base: nowhere.yaml\n"}, "base config (named in"),
        ({"c.yaml": "base: d.yaml\n", "d.yaml": "base: c.yaml\n"}, "loops back"),
        ({"c.yaml": "base: c.yaml\n"}, "loops back"),
        ({"c.yaml": "base: [a.yaml, b.yaml]\n"}, "names one other config file"),
        ({"c.yaml": "base: d.yaml\nmodel:\n  clases: [x]\n", "d.yaml": "model:\n  backbone: vgg16\n"}, "['clases']"),
    ],
)
def test_bad_base_is_one_line_naming_the_file(tmp_path, capsys, files, message):
    for name, text in files.items():
        _write(tmp_path / name, text)
    with pytest.raises(UserError):
        load_config(tmp_path / "c.yaml")
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and ".yaml" in err


def test_missing_base_names_the_missing_file(tmp_path, capsys):
    _write(tmp_path / "c.yaml", "base: sub/nowhere.yaml\n")
    assert main(["train", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "nowhere.yaml" in err and "c.yaml" in err


def test_grid_base_may_be_a_config_file(tmp_path):
    _write(tmp_path / "configs" / "base.yaml", "model:\n  backbone: vgg16\n  classes: [camera]\ntrain:\n  epochs: 2\n")
    grid = _write(
        tmp_path / "configs" / "grid.yaml",
        "base: base.yaml\nout: runs/g\nevaluate: {}\naxes:\n  lr:\n    small: {train: {lr: 0.0001}}\n"
        "    big: {train: {lr: 0.001}}\n",
    )
    _, cells = load_grid(grid)
    assert {c.name: c.config["train"]["lr"] for c in cells} == {"lr-small": 0.0001, "lr-big": 0.001}
    assert all(c.config["model"]["backbone"] == "vgg16" and c.config["train"]["epochs"] == 2 for c in cells)


@pytest.mark.parametrize(
    "override,message",
    [
        ("train.lr=abc", "train.lr is a number, not 'abc'"),
        ("train.lr=1e999", "train.lr is a number"),
        ("train.lr=.inf", "train.lr is a number"),
        ("train.batch_size=two", "train.batch_size is a whole number, not 'two'"),
        ("train.batch_size=0", "train.batch_size must be at least 1 (got 0)"),
        ("train.epochs=-1", "train.epochs must be at least 1"),
        ("train.epochs=1.5", "train.epochs is a whole number, not 1.5"),
        ("train.hflip=2", "train.hflip must be from 0.0 to 1.0"),
        ("train.out=", "train.out is empty: give text"),
        ("train.out=' '", "train.out is empty"),
        ("model.min_size=.nan", "model.min_size is a whole number or a list"),
        ("model.min_size=[]", "model.min_size is an empty list"),
        ("model.box_nms_thresh=nan", "model.box_nms_thresh is a number"),
        ("model.box_nms_thresh=1.5", "model.box_nms_thresh must be from 0.0 to 1.0"),
        ("model.classes=camera", "model.classes is a list of (text), not 'camera' (write [camera])"),
        ("model.anchor_sizes=[0, 64]", "model.anchor_sizes must be at least 1"),
        ("train.paste=true", "train.paste is a number, not True"),
    ],
)
def test_config_values_are_checked_by_type_and_range_in_one_line(tmp_path, capsys, override, message):
    """Every value is checked when the config is read, before any data or model is loaded: one
    line naming the key, the value and what is allowed (a string is never split into a list)."""
    config = ROOT / "configs" / "camera_phone_mnv2.yaml"
    with pytest.raises(UserError, match=re.escape(message)):
        load_config(config, [override])
    out = tmp_path / "run"
    assert main(["train", str(config), "--set", f"train.out={out}", "--set", override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message.split(" ")[0] in err[0]
    assert not out.exists()


def test_a_value_of_the_right_type_and_range_still_loads():
    config = ROOT / "configs" / "camera_phone_mnv2.yaml"
    cfg = load_config(config, ["train.lr=1", "model.anchor_sizes=[[16, 32], 64]", "train.paste_sizes=[8, 64.5]"])
    assert cfg.train.lr == 1 and cfg.model.anchor_sizes == [[16, 32], 64] and cfg.train.paste_sizes == [8, 64.5]
