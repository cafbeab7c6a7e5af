"""The page in a real browser: Playwright driving Debian's Chromium against `regiondet serve`.

The webcam is a clip Chromium plays as its camera (`--use-file-for-fake-video-capture`): a
real phone photo panned and zoomed, then real street scenes. The page must show the alert
while the phone is in view and drop it after. Screenshots are kept in test-artifacts/.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from urllib.parse import urlparse

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import DATA, ICDAR, ROOT, start_service
from regiondet.inference.multiscale import merge_outputs
from regiondet.inference.predictor import Detector, merged_classes, parts_merged
from regiondet.inference.tracking import AlertTracker

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt install chromium)")
ARTIFACTS = ROOT / "test-artifacts"
READY = "document.querySelector('#status').textContent.startsWith('ready')"  # the page's model is loaded
PHONES = DATA / "phone-photos" / "cellphone" / "test" / "images"
W, H, FPS = 640, 480, 10
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def server():
    """`regiondet serve` in its own process, as a user starts it."""
    proc, url = start_service()
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def _fit(image: Image.Image) -> np.ndarray:
    """A W x H RGB frame: the image scaled to cover it, centre-cropped."""
    scale = max(W / image.width, H / image.height)
    im = image.resize((round(image.width * scale), round(image.height * scale)))
    left, top = (im.width - W) // 2, (im.height - H) // 2
    return np.asarray(im.crop((left, top, left + W, top + H)).convert("RGB"))


def phone_then_streets(path: Path, phone_s: float = 4.0, street_s: float = 5.0) -> None:
    """A .y4m clip: a real phone photo panned and zoomed (the phone always in view), then
    real street scenes without a lens."""
    photo = Image.open(sorted(PHONES.glob("*.jpg"))[0]).convert("RGB")
    streets = [Image.open(p).convert("RGB") for p in sorted((ICDAR / "images").glob("*.jpg"))[:3]]
    frames = []
    n = int(phone_s * FPS)
    for i in range(n):  # zoom from the whole photo to 85 % of it, drifting right
        t = i / max(n - 1, 1)
        side = 1.0 - 0.15 * t
        w, h = photo.width * side, photo.height * side
        left = (photo.width - w) * t
        top = (photo.height - h) / 2
        frames.append(_fit(photo.crop((int(left), int(top), int(left + w), int(top + h)))))
    per = int(street_s * FPS) // len(streets)
    frames += [_fit(s) for s in streets for _ in range(per)]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{W} H{H} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for rgb in frames:
            f.write(b"FRAME\n" + cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())


def webcam_flags(tmp_path: Path) -> list[str]:
    """Chromium's flags for a fake webcam playing `phone_then_streets` (written to tmp_path)."""
    clip = tmp_path / "phone_then_streets.y4m"
    phone_then_streets(clip)
    ARTIFACTS.mkdir(exist_ok=True)
    return [
        *FLAGS,
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={clip}",
    ]


def test_dropping_a_photo_draws_its_boxes(server):
    ARTIFACTS.mkdir(exist_ok=True)
    photo = sorted(PHONES.glob("*.jpg"))[0]
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(server + "?run=server")
        page.wait_for_selector("#model option", state="attached")
        page.set_input_files("#file", str(photo))
        page.wait_for_selector("#detections li", timeout=30_000)
        found = page.locator("#detections li").all_inner_texts()
        assert any(t.startswith("phone") for t in found), found
        assert page.locator("#alert").is_visible()
        assert "found in" in page.locator("#status").inner_text()
        page.screenshot(path=str(ARTIFACTS / "page_photo.png"))
        browser.close()


def test_labels_of_neighbouring_boxes_do_not_cover_each_other(server):
    """The desk sample at score 0.1: a camera, a keyboard corner and a pen, boxes side by side;
    each label is drawn where no other is, one object (a camera also boxed as a phone) once."""
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(server + "?run=server")
        page.wait_for_selector("#model option", state="attached")
        page.fill("#score", "0.1")
        page.set_input_files("#file", str(ROOT / "samples" / "camera_desk.jpg"))
        page.wait_for_selector("#detections li", timeout=30_000)
        found = page.locator("#detections li").all_inner_texts()
        rects = json.loads(page.locator("#view").get_attribute("data-labels"))
        page.screenshot(path=str(ARTIFACTS / "page_labels_phone_width.png"))
        browser.close()
    assert len(rects) == len(found) >= 3, found
    for i, a in enumerate(rects):
        for b in rects[i + 1 :]:
            apart = (
                a["x"] + a["w"] <= b["x"]
                or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"]
                or b["y"] + b["h"] <= a["y"]
            )
            assert apart, (a, b, found)
    assert sum(t.startswith("camera") for t in found) == 1, found


def test_the_webcam_alert_follows_the_phone_in_and_out_of_view(server, tmp_path):
    args = webcam_flags(tmp_path)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page()
        page.goto(server + "?run=server")
        page.wait_for_selector("#model option", state="attached")
        page.click("#webcam")
        page.wait_for_selector("#alert", state="visible", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "page_webcam_alert.png"))
        page.wait_for_selector("#alert", state="hidden", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "page_webcam_clear.png"))
        events = page.locator("#timeline li").all_inner_texts()
        page.click("#stop")
        browser.close()
    assert any("lens in view" in e for e in events) and any("lens gone" in e for e in events), events


def test_at_phone_width_the_page_fits_and_an_error_clears_the_old_photo(server, tmp_path):
    """390x844 (a phone held upright): no sideways scrolling, a portrait photo within the screen's
    height; then a file that is no image: its error shows and the old photo, boxes and banner go."""
    ARTIFACTS.mkdir(exist_ok=True)
    portrait = tmp_path / "portrait.jpg"
    photo = Image.open(sorted(PHONES.glob("*.jpg"))[0]).convert("RGB")
    photo.resize((480, 960)).save(portrait)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all" * 50)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 390, "height": 844})
        page.goto(server + "?run=server")
        page.wait_for_selector("#model option", state="attached")
        page.set_input_files("#file", str(portrait))
        page.wait_for_selector("#detections li", timeout=30_000)
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        box = page.locator("#view").bounding_box()
        assert box["width"] <= 390 and box["height"] <= 0.75 * 844 + 1
        page.screenshot(path=str(ARTIFACTS / "page_phone_width.png"), full_page=True)
        page.set_input_files("#file", str(junk))
        shown = "document.querySelector('#status').textContent.includes('junk.jpg: 400')"
        page.wait_for_function(shown, timeout=30_000)
        assert page.locator("#detections li").count() == 0 and not page.locator("#alert").is_visible()
        page.screenshot(path=str(ARTIFACTS / "page_phone_error.png"), full_page=True)
        browser.close()


def test_on_this_device_the_page_finds_what_detect_finds_and_sends_no_image(server):
    """Device mode: the model runs in the page (ONNX Runtime Web, WebAssembly); on the samples
    its boxes are detect's within 1 px and its scores within 0.01, and the browser sends nothing
    but GET requests for the page, the runtime, the model list and the model."""
    samples = sorted((ROOT / "samples").glob("*.jpg"))
    detector = Detector.load("default")
    want = {p.name: detector.predict(p).to_json() for p in samples}
    requests, got = [], {}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r))
        page.goto(server + "?run=device")
        page.wait_for_function(READY, timeout=120_000)
        assert "on this device" in page.locator("#status").inner_text()
        for photo in samples:
            page.evaluate("document.querySelector('#view').dataset.result = ''")
            page.set_input_files("#file", str(photo))
            page.wait_for_function("document.querySelector('#view').dataset.result", timeout=60_000)
            got[photo.name] = json.loads(page.locator("#view").get_attribute("data-result"))
        page.screenshot(path=str(ARTIFACTS / "page_device_photo.png"))
        browser.close()
    for name, line in want.items():
        page_line = got[name]
        assert page_line["labels"] == line["labels"], (name, page_line, line)
        if line["boxes"]:
            assert np.abs(np.array(page_line["boxes"]) - np.array(line["boxes"])).max() <= 1, name
            assert np.abs(np.array(page_line["scores"]) - np.array(line["scores"])).max() <= 0.01, name
            for a, b in zip(page_line["class_scores"], line["class_scores"], strict=True):  # both classes' scores
                assert all(abs(a.get(c, 0) - b.get(c, 0)) <= 0.01 for c in a | b), (name, a, b)
    assert sum(len(line["labels"]) for line in want.values()) >= 5
    assert {r.method for r in requests} == {"GET"} and all(r.post_data is None for r in requests)
    paths = {urlparse(r.url).path for r in requests}
    assert not any(path.startswith(("/v1/detect", "/v1/live")) for path in paths), paths
    assert "/v1/device/default/detector.onnx" in paths


def lens_sequence(seed: int, frames: int = 240, fps: float = 10.0) -> list[dict]:
    """Detections a live stream gives: lenses that come into view, drift, dip below the score,
    drop out for a moment or for good, get a second box (a camera also called a phone), and
    stray false alarms; float32 scores, as the detector gives them."""
    rng = np.random.default_rng(seed)
    lenses = []
    out = []
    for f in range(frames):
        if rng.random() < 0.03:
            x, y, s = rng.uniform(0, 500), rng.uniform(0, 350), rng.uniform(30, 150)
            lenses.append(
                {"box": np.array([x, y, x + s, y + s * rng.uniform(0.6, 1.8)]), "until": f + rng.integers(5, 120)}
            )
        boxes, scores, labels = [], [], []
        for lens in lenses:
            if f > lens["until"] or rng.random() < 0.12:
                continue
            lens["box"] = lens["box"] + np.tile(rng.normal(0, 4, 2), 2)  # drifts, keeps its size
            boxes.append(lens["box"].tolist())
            scores.append(
                rng.choice([rng.uniform(0.3, 0.99), rng.uniform(0.1, 0.3), rng.uniform(0.02, 0.1)], p=[0.6, 0.3, 0.1])
            )
            labels.append(str(rng.choice(["camera", "phone"])))
            if rng.random() < 0.15:
                inner = lens["box"] + np.array([5, 5, -5, -5])
                boxes.append(inner.tolist())
                scores.append(rng.uniform(0.3, 0.9))
                labels.append("phone")
        if rng.random() < 0.1:
            x, y = rng.uniform(0, 600), rng.uniform(0, 440)
            boxes.append([x, y, x + 40, y + 40])
            scores.append(rng.uniform(0.3, 0.6))
            labels.append("camera")
        scores = [float(np.float32(s)) for s in scores]
        boxes = [[float(np.float32(v)) for v in b] for b in boxes]
        out.append({"boxes": boxes, "scores": scores, "labels": labels, "frame": f, "seconds": round(f / fps, 3)})
    return out


def test_the_pages_tracker_gives_the_servers_ids_and_events(server):
    """tracker.js (device mode) and AlertTracker (the server, `detect --alert`) on the same
    detections: the same track ids frame by frame and the same alert events, field for field."""
    sequences = [lens_sequence(seed) for seed in range(6)]
    want = []
    for seq in sequences:
        tracker, frames = AlertTracker(3, 5, high=0.3, low=0.1, hold_s=2.0), []
        for d in seq:
            ids, events = tracker.update(
                np.array(d["boxes"]), np.array(d["scores"]), d["labels"], d["frame"], d["seconds"]
            )
            frames.append([ids, events])
        frames.append([[], tracker.close(seq[-1]["frame"], seq[-1]["seconds"])])
        want.append(frames)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(server + "?run=server")
        got = page.evaluate(
            """async (sequences) => {
                const { AlertTracker } = await import("/static/tracker.js");
                return sequences.map((seq) => {
                    const t = new AlertTracker({ k: 3, n: 5, high: 0.3, low: 0.1, holdS: 2.0 });
                    const frames = seq.map((d) => t.update(d.boxes, d.scores, d.labels, d.frame, d.seconds));
                    const end = seq[seq.length - 1];
                    return [...frames, [[], t.close(end.frame, end.seconds)]];
                });
            }""",
            sequences,
        )
        browser.close()
    events = 0
    for seq_want, seq_got in zip(want, got, strict=True):
        for (ids_w, ev_w), (ids_g, ev_g) in zip(seq_want, seq_got, strict=True):
            assert list(ids_w) == ids_g
            assert len(ev_w) == len(ev_g)
            for a, b in zip(ev_w, ev_g, strict=True):
                assert a.keys() == b.keys()
                assert all(a[k] == b[k] if isinstance(a[k], str) else abs(a[k] - b[k]) < 2e-4 for k in a), (a, b)
            events += len(ev_w)
    assert events >= 20


def object_boxes(seed: int) -> dict:
    """Detections as a camera model gives them: objects boxed once or twice (the other class at
    an IoU around the merge's 0.5, or as a part lying 60-100 % inside), float32 like a model's."""
    rng = np.random.default_rng(seed)
    boxes, scores, labels = [], [], []
    for _ in range(rng.integers(1, 7)):
        x, y, w, h = rng.uniform(0, 500), rng.uniform(0, 350), rng.uniform(20, 200), rng.uniform(20, 200)
        boxes.append([x, y, x + w, y + h])
        labels.append(int(rng.integers(1, 3)))
        scores.append(rng.uniform(0.05, 0.99))
        kind = rng.choice(["alone", "overlap", "part"])
        if kind == "overlap":
            d = rng.uniform(0.05, 0.3)
            boxes.append([x + d * w, y + d * h, x + (1 + d) * w, y + (1 + d) * h])
        elif kind == "part":
            out = rng.uniform(0, 0.4)  # share of the part's width beyond the whole
            pw, ph = w * rng.uniform(0.2, 0.8), h * rng.uniform(0.3, 0.9)
            px, py = x + w - pw * (1 - out), y + rng.uniform(0, h - ph)
            boxes.append([px, py, px + pw, py + ph])
        if kind != "alone":
            labels.append(3 - labels[-1] if rng.random() < 0.85 else labels[-1])
            scores.append(rng.uniform(0.05, 0.99))
    f32 = np.float32
    return {
        "boxes": [[float(f32(v)) for v in b] for b in boxes],
        "scores": [float(f32(v)) for v in scores],
        "labels": labels,
    }


def test_the_pages_merging_is_detects(server):
    """device.js's merging steps against the Python they port, on random detections (the sample
    photos meet few of their branches): the readings of several sizes merged (merge_outputs),
    one box per object (merged_classes), parts taken into a better box of the other class
    (parts_merged): the same boxes kept and the same class scores."""
    sets = [object_boxes(seed) for seed in range(60)]
    want, parts = [], 0
    for d in sets:
        out = {
            "boxes": torch.tensor(d["boxes"]).reshape(-1, 4),
            "scores": torch.tensor(d["scores"]),
            "labels": torch.tensor(d["labels"]),
        }
        thirds = [{k: v[i::3] for k, v in out.items()} for i in range(3)]
        merged = merge_outputs(thirds, 0.5, 8)
        best, class_scores = merged_classes(out, 2, 0.5)
        keep = best & (out["scores"] >= 0.1)
        kept = parts_merged(out, keep, class_scores, 0.7, 0.3)
        parts += int((keep & ~kept).sum())
        want.append(
            {
                "merged": [merged["boxes"].tolist(), merged["scores"].tolist(), merged["labels"].tolist()],
                "keep": kept.tolist(),
                "class_scores": class_scores.tolist(),
            }
        )
    assert parts >= 10  # the part rule was met often enough to mean something
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(server + "?run=server")
        got = page.evaluate(
            """async (sets) => {
                const d = await import("/static/device.js");
                return sets.map(({ boxes, scores, labels }) => {
                    const thirds = [0, 1, 2].map((i) => ({
                        boxes: boxes.filter((_, j) => j % 3 === i), scores: scores.filter((_, j) => j % 3 === i),
                        labels: labels.filter((_, j) => j % 3 === i) }));
                    const m = d.mergedReadings(thirds, 0.5, 8);
                    const [best, perClass] = d.mergedClasses(boxes, scores, labels, 2, 0.5);
                    const keep = d.partsMerged(boxes, scores, labels, scores.map((v, i) => best[i] && v >= 0.1),
                        perClass, 0.7, 0.3);
                    return { merged: [m.boxes, m.scores, m.labels], keep, class_scores: perClass };
                });
            }""",
            sets,
        )
        browser.close()
    for w, g in zip(want, got, strict=True):
        assert w["keep"] == g["keep"]
        assert w["merged"][2] == g["merged"][2] and np.allclose(w["merged"][1], g["merged"][1], atol=1e-6)
        assert np.allclose(np.array(w["merged"][0]).reshape(-1, 4), np.array(g["merged"][0]).reshape(-1, 4), atol=1e-3)
        assert np.allclose(w["class_scores"], g["class_scores"], atol=1e-6)


def test_on_this_device_the_webcam_alert_follows_the_phone_and_no_frame_is_sent(server, tmp_path):
    args = webcam_flags(tmp_path)
    requests = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=args)
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r))
        page.on("websocket", lambda ws: requests.append(ws))
        page.goto(server + "?run=device")
        page.wait_for_function(READY, timeout=120_000)
        page.click("#webcam")
        page.wait_for_selector("#alert", state="visible", timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "page_device_webcam_alert.png"))
        page.wait_for_selector("#alert", state="hidden", timeout=60_000)
        events = page.locator("#timeline li").all_inner_texts()
        assert "on this device" in page.locator("#status").inner_text()
        page.click("#stop")
        browser.close()
    assert any("lens in view" in e for e in events) and any("lens gone" in e for e in events), events
    assert all(getattr(r, "method", "WS") == "GET" and r.post_data is None for r in requests), requests


def test_after_one_visit_the_page_starts_and_detects_with_the_server_stopped():
    """Installable (a manifest and a service worker) and offline after the first visit: the server
    stopped, the page reloads from the cache and still runs the model on this device, and finds
    what `regiondet detect` finds (the desk sample: its camera, and the phone on its dock)."""
    photo = ROOT / "samples" / "camera_desk.jpg"
    want = Detector.load("default").predict(photo).labels
    proc, url = start_service()
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page()
            page.goto(url + "?run=device")
            page.wait_for_function(READY, timeout=120_000)
            assert page.evaluate("navigator.serviceWorker.ready.then((r) => r.active.scriptURL)").endswith("/sw.js")
            manifest = page.evaluate("fetch('/manifest.webmanifest').then((r) => r.json())")
            assert manifest["start_url"] == "/" and manifest["display"] == "standalone"
            proc.terminate()
            proc.wait(timeout=20)
            page.reload()
            page.wait_for_function(READY, timeout=120_000)
            page.set_input_files("#file", str(photo))
            page.wait_for_function("document.querySelector('#view').dataset.result", timeout=60_000)
            result = json.loads(page.locator("#view").get_attribute("data-result"))
            page.screenshot(path=str(ARTIFACTS / "page_device_offline.png"))
            browser.close()
    finally:
        proc.kill()
        proc.wait(timeout=20)
    assert "camera" in want and result["labels"] == want


def test_with_webgpu_the_page_finds_what_detect_finds(server):
    """`?backend=webgpu`: ONNX Runtime Web's WebGPU build (here on Chromium's fallback adapter, a
    CPU emulation; `auto` takes WebGPU only where the browser has a GPU) gives detect's boxes."""
    photo = ROOT / "samples" / "camera_compact.jpg"
    want = Detector.load("default").predict(photo).to_json()
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--enable-unsafe-webgpu"])
        page = browser.new_page()
        page.goto(server + "?run=device&backend=webgpu")
        page.wait_for_function(READY, timeout=180_000)
        assert "WebGPU" in page.locator("#status").inner_text()
        page.set_input_files("#file", str(photo))
        page.wait_for_function("document.querySelector('#view').dataset.result", timeout=180_000)
        got = json.loads(page.locator("#view").get_attribute("data-result"))
        browser.close()
    assert got["labels"] == want["labels"] and len(want["labels"]) == 1
    assert np.abs(np.array(got["boxes"]) - np.array(want["boxes"])).max() <= 1
    assert np.abs(np.array(got["scores"]) - np.array(want["scores"])).max() <= 0.01
