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
from PIL import Image

from conftest import DATA, ICDAR, ROOT, start_service
from regiondet.inference.predictor import Detector

playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt install chromium)")
ARTIFACTS = ROOT / "test-artifacts"
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
    clip = tmp_path / "phone_then_streets.y4m"
    phone_then_streets(clip)
    ARTIFACTS.mkdir(exist_ok=True)
    args = [*FLAGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
    args.append(f"--use-file-for-fake-video-capture={clip}")
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
        page.wait_for_function("document.querySelector('#status').textContent.startsWith('ready')", timeout=120_000)
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
    assert sum(len(line["labels"]) for line in want.values()) >= 5
    assert {r.method for r in requests} == {"GET"} and all(r.post_data is None for r in requests)
    paths = {urlparse(r.url).path for r in requests}
    assert not any(path.startswith(("/v1/detect", "/v1/live")) for path in paths), paths
    assert "/v1/device/default/detector.onnx" in paths
