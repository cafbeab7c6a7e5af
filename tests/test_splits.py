from __future__ import annotations

from pathlib import Path

import pytest

from conftest import CAMERA_TRAIN
from regiondet.data.spec import load_spec, parse_spec
from regiondet.data.splits import group_key, split_by_group
from regiondet.errors import UserError


def test_roboflow_group_key():
    assert group_key(Path("00034cd6adabef6a_jpg.rf.26c97d2aff1dca23daaeefc28ac2ada1.jpg")) == "00034cd6adabef6a"
    assert group_key(Path("img_12.jpg")) == "img_12"


def test_augmented_copies_stay_together():
    samples = load_spec(f"voc:{CAMERA_TRAIN}")
    kept, held = split_by_group(samples, 0.2, seed=0)
    assert len(kept) + len(held) == 2100
    assert {group_key(s.path) for s in kept}.isdisjoint({group_key(s.path) for s in held})
    assert len({group_key(s.path) for s in held}) == 140  # 20 % of 700 photos
    again = split_by_group(samples, 0.2, seed=0)[1]
    assert [s.path for s in again] == [s.path for s in held]
    assert [s.path for s in split_by_group(samples, 0.2, seed=1)[1]] != [s.path for s in held]


def test_skip_and_limit_cut_disjoint_slices_of_a_holdout():
    """Validation on `limit=5`, test on `skip=5`: no scene in both, none lost."""
    icdar = "icdar2015:../shared/data/icdar2015?part=holdout&fraction=0.2&seed=0"
    whole = [s.path for s in load_spec(icdar)]
    val = [s.path for s in load_spec(icdar + "&limit=5")]
    test = [s.path for s in load_spec(icdar + "&skip=5")]
    assert val + test == whole and len(val) == 5
    assert [s.path for s in load_spec(icdar + "&skip=5&limit=3")] == whole[5:8]
    assert str(parse_spec(icdar + "&skip=5&limit=3")).endswith("skip=5&limit=3")
    with pytest.raises(UserError, match="skip must be 0 or more"):
        parse_spec(icdar + "&skip=-1")
    with pytest.raises(UserError, match="selects no images"):
        load_spec(icdar + f"&skip={len(whole)}")
