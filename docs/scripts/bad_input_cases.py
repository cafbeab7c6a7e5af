"""Run regiondet on the bad inputs a hostile new user tried, and print what each command did.

    python docs/scripts/bad_input_cases.py [--work /tmp/bad-input]

Each case is a real command line (`regiondet ...`) in a scratch folder: an output folder that
holds the inputs, images of 100000x2 px, a GIF in a folder, scores of 2 / nan / -1, config values
of the wrong type or range, inconsistent COCO / YOLO / detections files, output paths that are a
folder or under a file, a busy port, a garbled MP4 and a truncated AVI. One row per case: exit
status, whether a traceback was printed, how many lines went to stderr, and the last of them.
The figures it should show: no traceback, every refusal one line with exit status 2, and no
input changed. The data come from `../shared/data` beside the repository.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
CAMERAS = f"voc:{DATA}/openimages-camera/valid?labels=camera"
CONFIG = ROOT / "configs" / "camera_phone_budget_coco.yaml"
BAD_SETTINGS = (
    "train.epochs=-1",
    "train.epochs=1.5",
    "train.lr=abc",
    "train.lr=1e999",
    "train.batch_size=two",
    "train.batch_size=0",
    "model.min_size=.nan",
    "model.min_size=[]",
    "train.out=",
    "model.box_nms_thresh=nan",
    "model.classes=camera",
)


class Cases:
    """Runs commands in the scratch folder and keeps one row per case."""

    def __init__(self, work: Path):
        self.work = work
        self.regiondet = [str(Path(sys.executable).with_name("regiondet")), "--quiet"]
        self.rows: list[tuple[str, int, bool]] = []

    def run(self, name: str, args: list[str], check: Callable[[], str] | None = None) -> str:
        p = subprocess.run(self.regiondet + args, cwd=self.work, capture_output=True, text=True, timeout=600)
        err = p.stderr.strip().splitlines()
        traceback = "Traceback" in p.stderr + p.stdout
        last = err[-1] if err else p.stdout.strip().splitlines()[0] if p.stdout.strip() else ""
        extra = f" [{check()}]" if check else ""
        print(f"{name:42s} rc={p.returncode} traceback={int(traceback)} stderr={len(err)} | {last[:140]}{extra}")
        self.rows.append((name, p.returncode, traceback))
        return p.stdout


def digests(folder: Path) -> dict[str, str]:
    return {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir())}


def strict_json(path: Path) -> str:
    """Whether a strict JSON reader (no NaN, no Infinity) takes the file."""

    def refuse(constant: str) -> float:
        raise ValueError(constant)

    try:
        json.loads(path.read_text(), parse_constant=refuse)
    except (ValueError, OSError) as e:
        return f"not strict JSON: {e}"
    return "strict JSON"


def write_lines(path: Path, lines: list[dict]) -> str:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path.name


def images_and_outputs(c: Cases, w: Path) -> None:
    shutil.copytree(ROOT / "samples", w / "same", ignore=shutil.ignore_patterns("*.md"))
    before = digests(w / "same")
    c.run(
        "detect same/ --out same/",
        ["detect", "same", "--out", "same"],
        lambda: f"inputs unchanged: {digests(w / 'same') == before}",
    )
    Image.new("RGB", (100000, 2), (90, 90, 90)).save(w / "long_w.png")
    Image.new("RGB", (2, 100000), (90, 90, 90)).save(w / "long_h.png")
    (w / "folder").mkdir()
    shutil.copy(w / "long_w.png", w / "folder" / "a_long.png")
    for f in (ROOT / "samples").glob("*.jpg"):
        shutil.copy(f, w / "folder" / f.name)
    c.run("detect long_w.png", ["detect", "long_w.png"])
    c.run("detect long_h.png", ["detect", "long_h.png"])
    c.run(
        "detect folder (one 100000x2)",
        ["detect", "folder", "--out", "drawn"],
        lambda: f"drawn: {len(list((w / 'drawn').glob('*')))} of 5 photos",
    )
    c.run("export default d.onnx", ["export", "default", "d.onnx"])
    c.run("detect long_w.png --model d.onnx", ["detect", "long_w.png", "--model", "d.onnx"])
    (w / "gifs").mkdir()
    Image.open(ROOT / "samples" / "camera_desk.jpg").save(w / "gifs" / "c.gif")
    shutil.copy(ROOT / "samples" / "camera_desk.jpg", w / "gifs" / "d.jpg")
    out = c.run("detect folder with a .gif", ["detect", "gifs"])
    print(f"{'':42s} JSON lines: {len(out.splitlines())} (2 files)")
    (w / "adir").mkdir()
    (w / "afile").write_text("x")
    photo = str(ROOT / "samples" / "camera_desk.jpg")
    c.run("export default adir/", ["export", "default", "adir/"])
    c.run("detect --events adir", ["detect", photo, "--events", "adir"])
    c.run("detect --out afile", ["detect", photo, "--out", "afile"])
    c.run("detect --out /proc/x", ["detect", photo, "--out", "/proc/x"])
    c.run("detect --out afile/sub", ["detect", photo, "--out", "afile/sub"])
    c.run(
        "export default model.txt",
        ["export", "default", "model.txt"],
        lambda: f"model.txt written: {(w / 'model.txt').exists()}",
    )
    for d, src in (("dir_a", "camera_desk.jpg"), ("dir_b", "camera_compact.jpg")):
        (w / d).mkdir()
        shutil.copy(ROOT / "samples" / src, w / d / "x.jpg")
    out = c.run("detect dir_a dir_b (each has x.jpg)", ["detect", "dir_a", "dir_b"])
    print(f"{'':42s} JSON lines: {len(out.splitlines())} (2 files)")
    c.run(
        "detect dir_a dir_b --out both",
        ["detect", "dir_a", "dir_b", "--out", "both"],
        lambda: f"drawn: {sorted(p.name for p in (w / 'both').iterdir())}",
    )


def numbers_and_config(c: Cases) -> None:
    for score in ("2", "nan", "-1"):
        c.run(f"detect --score {score}", ["detect", str(ROOT / "samples"), "--score", score])
        c.run(f"evaluate --score {score}", ["evaluate", "--data", CAMERAS, "--score", score])
        c.run(f"mine-negatives --score {score}", ["data", "mine-negatives", "x", "--out", "m.txt", "--score", score])
    for setting in BAD_SETTINGS:
        c.run(f"train --set {setting}", ["train", str(CONFIG), "--set", setting])
    c.run("evaluate --threads -3", ["evaluate", "--data", CAMERAS, "--threads", "-3"])
    c.run("benchmark speed --runs 0", ["benchmark", "speed", "--runs", "0"])
    c.run("serve --port -1", ["serve", "--port", "-1"])
    c.run("detect --stride 0", ["detect", str(ROOT / "samples"), "--stride", "0"])
    c.run(
        "report /nonexistent",
        ["report", "/nonexistent"],
        lambda: f"docs/experiments.md written: {(c.work / 'docs' / 'experiments.md').exists()}",
    )
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        c.run("serve on a port in use", ["serve", "--port", str(held.getsockname()[1])])


def annotations(c: Cases, w: Path) -> None:
    photo = Image.open(ROOT / "samples" / "camera_desk.jpg")
    (w / "coco").mkdir()
    photo.save(w / "coco" / "a.jpg")
    image = {"id": 1, "file_name": "a.jpg", "width": photo.width, "height": photo.height}
    a1 = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50]}
    a2 = {"id": 1, "image_id": 1, "category_id": 2, "bbox": [100, 100, 50, 50]}
    two = [{"id": 1, "name": "camera"}, {"id": 2, "name": "phone"}]
    files = {
        "category id twice": ([{"id": 1, "name": "camera"}, {"id": 1, "name": "phone"}], [a1], [image]),
        "annotation id twice": (two, [a1, a2], [image]),
        "image width not the file's": (two, [a1], [image | {"width": photo.width + 100}]),
        "image id twice": (two, [a1], [image, image]),
    }
    for name, (categories, anns, images) in files.items():
        path = w / "coco" / f"{name.replace(' ', '_')}.json"
        path.write_text(json.dumps({"images": images, "categories": categories, "annotations": anns}))
        c.run(f"COCO: {name}", ["data", "stats", f"coco:{path}:{w / 'coco'}"])
    for split, names in (("train", "nc: 3\nnames: [phone]\n"), ("val", "nc: 1\nnames: [phone]\n")):
        (w / "yolo" / "images" / split).mkdir(parents=True)
        (w / "yolo" / "labels" / split).mkdir(parents=True)
        photo.save(w / "yolo" / "images" / split / "a.jpg")
        (w / "yolo" / "labels" / split / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
        (w / "yolo" / f"{split}.yaml").write_text(f"path: .\n{split}: images/{split}\n{names}")
    c.run("YOLO: nc 3 with one name", ["data", "stats", "yolo:yolo/train.yaml:train"])
    data, file = "yolo:yolo/val.yaml:val", str(Path("yolo/images/val/a.jpg"))
    lines = {
        "an unknown label": [{"file": file, "boxes": [[1, 1, 50, 50]], "labels": ["banana"], "scores": [0.9]}],
        "an inverted box": [{"file": file, "boxes": [[50, 50, 1, 1]], "labels": ["phone"], "scores": [0.9]}],
        "the same file twice": [{"file": file, "boxes": [], "labels": [], "scores": []}] * 2,
        "a NaN score": [{"file": file, "boxes": [[1, 1, 50, 50]], "labels": ["phone"], "scores": [float("nan")]}],
    }
    for name, content in lines.items():
        dets = write_lines(w / f"{name.replace(' ', '_')}.jsonl", content)
        c.run(f"evaluate --detections: {name}", ["evaluate", "--data", data, "--detections", dets])
    c.run("data convert --out adir", ["data", "convert", data, "--out", "adir"])
    c.run("evaluate --json adir", ["evaluate", "--data", data, "--json", "adir"])
    c.run(
        "evaluate --json e.json (strict JSON?)",
        ["evaluate", "--data", data, "--json", "e.json"],
        lambda: strict_json(w / "e.json"),
    )


def videos(c: Cases, w: Path) -> None:
    frame = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    for name, fourcc in (("v.mp4", "mp4v"), ("v.avi", "MJPG")):
        writer = cv2.VideoWriter(str(w / name), cv2.VideoWriter_fourcc(*fourcc), 10, (64, 48))
        for i in range(30):
            writer.write(np.roll(frame, i, 1))
        writer.release()
    garbled, rng = bytearray((w / "v.mp4").read_bytes()), np.random.default_rng(1)
    for i in rng.integers(len(garbled) // 3, len(garbled), 40):
        garbled[i] = rng.integers(0, 256)
    (w / "garbled.mp4").write_bytes(bytes(garbled))
    avi = (w / "v.avi").read_bytes()
    (w / "truncated.avi").write_bytes(avi[: int(len(avi) * 0.6)])
    c.run("detect garbled.mp4", ["detect", "garbled.mp4"])
    c.run("detect truncated.avi", ["detect", "truncated.avi"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/regiondet-bad-input"))
    work = parser.parse_args().work.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    c = Cases(work)
    images_and_outputs(c, work)
    numbers_and_config(c)
    annotations(c, work)
    videos(c, work)
    tracebacks = sum(traceback for *_, traceback in c.rows)
    print(
        f"{len(c.rows)} cases: {tracebacks} with a traceback; exit status 0 for: "
        + ", ".join(name for name, rc, _ in c.rows if rc == 0)
    )
    return 1 if tracebacks else 0


if __name__ == "__main__":
    sys.exit(main())
