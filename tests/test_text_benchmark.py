"""The text benchmark: offline peers on real ICDAR 2015 images, scored by regiondet's evaluator."""

from __future__ import annotations

import json

import pytest

from conftest import ICDAR
from regiondet.benchmark.text import format_table, run_text_benchmark
from regiondet.cli import main
from regiondet.data.spec import load_spec

pytest.importorskip("rapidocr")
pytest.importorskip("easyocr")

HOLDOUT = f"icdar2015:{ICDAR}?part=holdout&fraction=0.2&seed=0&limit=2"


def test_peers_find_the_words_of_real_scenes():
    samples = load_spec(HOLDOUT)
    rows = run_text_benchmark([], ["rapidocr-words", "easyocr"], samples, threads=2, progress=False)
    assert [r["method"] for r in rows] == ["rapidocr-words", "easyocr"]
    for r in rows:
        assert r["images"] == 2 and r["latency_ms_median"] > 0
        assert r["recall"] > 0.3 and r["precision"] > 0.3, r  # word-level detectors on word-level labels
    table = format_table(rows)
    assert table.count("\n") == 3 and "| easyocr | 2 |" in table
    assert all(line.count("| - |") == 1 for line in table.splitlines()[2:])  # peers propose nothing


def test_regiondet_row_says_how_many_words_its_text_rpn_proposed():
    """In PyTorch the Text-RPN is asked for its proposals (an ONNX graph has no RPN to ask)."""
    samples = load_spec(HOLDOUT)
    (row,) = run_text_benchmark(["text_fast"], [], samples, threads=2, progress=False, runtime="torch")
    assert row["runtime"] == "torch"
    proposed = row["proposal_recall"]["0.7"]
    assert row["images"] == 2 and row["recall"] > 0.2
    assert row["proposal_recall"]["0.5"] >= proposed > 0
    assert f"| {proposed:.3f} |" in format_table([row])


def test_line_detector_scores_low_on_word_labels():
    """PP-OCR's DBNet alone boxes whole lines: the protocol's one-to-one IoU > 0.5 rejects most."""
    samples = load_spec(HOLDOUT)
    lines, words = run_text_benchmark([], ["rapidocr", "rapidocr-words"], samples, threads=2, progress=False)
    assert lines["recall"] < words["recall"]


def test_benchmark_command_errors_are_one_line(tmp_path, capsys, trained_run):
    assert main(["benchmark", "text", "--model", "none", "--peers", "tesseract", "--data", HOLDOUT]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "unknown peer 'tesseract'" in err
    box_model = str(trained_run / "best.pt")
    assert main(["benchmark", "text", "--model", box_model, "--peers", "--data", HOLDOUT]) == 2
    assert "needs a text model" in capsys.readouterr().err
    assert main(["benchmark", "text", "--peers", "rapidocr", "--model", "none", "--data", f"icdar2015:{tmp_path}"]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_benchmark_command_writes_table_and_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    md = tmp_path / "bench.md"
    args = ["--quiet", "benchmark", "text", "--model", "none", "--peers", "rapidocr", "--data", HOLDOUT]
    assert main([*args, "--threads", "2", "--json", str(out), "--markdown", str(md)]) == 0
    printed = capsys.readouterr().out
    res = json.loads(out.read_text())
    assert res["data"] == [HOLDOUT] and res["rows"][0]["method"] == "rapidocr"
    assert md.read_text().strip() == printed.strip()


def test_rapidocr_word_results_of_every_shape():
    from regiondet.benchmark.text_peers import _word_boxes

    box = [[0, 0], [4, 0], [4, 2], [0, 2]]
    lines = ((("LIFT", 0.9, box), ("LOBBY", 0.8, box)), (), ("2", 0.99, box), (("x", 0.5, [3.0, 4.0]),))
    boxes = _word_boxes(lines)
    assert len(boxes) == 3 and all(b.shape == (4, 2) for b in boxes)  # a lone point is no outline
