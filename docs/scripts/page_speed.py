"""The page's speed in a real browser, on this device (ONNX Runtime Web) and on the server.

    python docs/scripts/page_speed.py [--sizes 320 416] [--seconds 15] [--json page_speed.json]

For each read size, `regiondet serve --set model.test_min_size=S --set model.test_max_size=S`
is started and Debian's Chromium (headless, Playwright) opens the page: the time from opening it
to the first boxes on a photo, cold (a new browser profile: the runtime and the model are
downloaded and compiled) and cached (the page reopened: its service worker's cache), then a
webcam (a 640x480 clip of a phone photo played as the camera) for `--seconds` in each mode:
frames answered per second and the model's ms per frame as the page reports it. The server
runs on the same machine, so both modes share its cores. Needs `pip install playwright` and
`apt install chromium`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from PIL import Image
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from conftest import start_service  # noqa: E402  (the tests' way of starting `regiondet serve`)

READY = "document.querySelector('#status').textContent.startsWith('ready')"
FLAGS = ["--no-sandbox", "--disable-gpu", "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def clip(path: Path, seconds: float = 20.0, fps: int = 10) -> None:
    """A 640x480 .y4m clip: the phone sample drifting across the frame."""
    photo = Image.open(ROOT / "samples" / "phone_webcam.jpg").convert("RGB").resize((480, 480))
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W640 H480 F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(int(seconds * fps)):
            frame = Image.new("RGB", (640, 480), (40, 40, 40))
            frame.paste(photo, (int(80 + 60 * np.sin(i / 15)), 0))
            f.write(b"FRAME\n" + cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2YUV_I420).tobytes())


def first_boxes(page, url: str) -> float:
    """Seconds from opening the page to the boxes of a photo drawn (device mode)."""
    start = time.perf_counter()
    page.goto(url + "?run=device")
    page.wait_for_function(READY, timeout=300_000)
    page.set_input_files("#file", str(ROOT / "samples" / "camera_desk.jpg"))
    page.wait_for_function("document.querySelector('#view').dataset.result", timeout=120_000)
    return time.perf_counter() - start


def live(page, url: str, mode: str, seconds: float) -> dict:
    page.goto(f"{url}?run={mode}")
    page.wait_for_function(READY, timeout=300_000)
    page.click("#webcam")
    page.wait_for_function("document.querySelector('#view').dataset.live", timeout=120_000)
    first = json.loads(page.locator("#view").get_attribute("data-live"))
    start = time.perf_counter()
    page.wait_for_timeout(seconds * 1000)
    stats = json.loads(page.locator("#view").get_attribute("data-live"))
    elapsed = time.perf_counter() - start
    page.click("#stop")
    frames = stats["frames"] - first["frames"]
    return {"fps": frames / elapsed, "ms_per_frame": (stats["ms"] - first["ms"]) / max(frames, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[320, 416])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--json", type=Path)
    a = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "phone.y4m"
        clip(video)
        for size in a.sizes:
            sets = ["--set", f"model.test_min_size={size}", "--set", f"model.test_max_size={size}"]
            proc, url = start_service(extra=sets)
            try:
                with sync_playwright() as p:
                    args = [*FLAGS, f"--use-file-for-fake-video-capture={video}"]
                    context = p.chromium.launch_persistent_context(
                        Path(tmp) / f"profile{size}", executable_path=chromium, args=args
                    )
                    page = context.new_page()
                    cold = first_boxes(page, url)
                    page.wait_for_function("navigator.serviceWorker.controller !== null", timeout=60_000)
                    cached = first_boxes(page, url)
                    row = {"size": size, "first_boxes_cold_s": cold, "first_boxes_cached_s": cached}
                    for mode in ("device", "server"):
                        for key, value in live(page, url, mode, a.seconds).items():
                            row[f"{mode}_{key}"] = value
                    context.close()
            finally:
                proc.terminate()
                proc.wait(timeout=30)
            rows.append(row)
    head = ("size", "first boxes cold", "cached", "device fps", "ms/frame", "server fps", "ms/frame")
    print("".join(f"{h:>{w}}" for h, w in zip(head, (5, 18, 8, 12, 10, 12, 10), strict=True)))
    for r in rows:
        print(
            f"{r['size']:>5}{r['first_boxes_cold_s']:>17.1f}s{r['first_boxes_cached_s']:>7.1f}s"
            f"{r['device_fps']:>12.1f}{r['device_ms_per_frame']:>10.0f}{r['server_fps']:>12.1f}{r['server_ms_per_frame']:>10.0f}"
        )
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
