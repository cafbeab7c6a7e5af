"""`regiondet serve` on real photos: the API, the live WebSocket, limits, the token, no disk."""

from __future__ import annotations

import asyncio
import builtins
import io
import json
import logging
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient
from PIL import Image
from starlette.testclient import WebSocketDenialResponse
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import CAMERA_VALID, DATA, ICDAR, start_service
from regiondet.cli import main
from regiondet.serve.app import Settings, create_app

PHONES = DATA / "phone-photos" / "cellphone" / "test" / "images"


@pytest.fixture(scope="module")
def app():
    return create_app(Settings(model="default"))


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app) as c:
        yield c


def jpeg(path, side: int = 416) -> bytes:
    im = Image.open(path).convert("RGB")
    im.thumbnail((side, side))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()


def camera_photo() -> bytes:
    return sorted(CAMERA_VALID.glob("*.jpg"))[0].read_bytes()


def test_health_models_and_page(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["model"] == "default"
    names = [m["name"] for m in client.get("/v1/models").json()["models"]]
    assert names[0] == "default" and "text_fast" in names
    page = client.get("/")
    assert page.status_code == 200 and 'src="static/app.js"' in page.text
    assert client.get("/static/app.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/static/..%2Fapp.py").status_code == 404
    assert "/v1/detect" in client.get("/openapi.json").json()["paths"]
    docs = client.get("/docs").text  # the OpenAPI page works offline: its scripts come from the service
    scripts = [s.split('"')[0] for s in docs.split('src="')[1:]]
    assert scripts and all(s.startswith("/") for s in scripts), scripts
    assert all(client.get(s).status_code == 200 for s in scripts)


def test_detect_takes_a_raw_body_or_a_multipart_file_with_the_same_answer(client):
    data = camera_photo()
    raw = client.post("/v1/detect", content=data, headers={"content-type": "image/jpeg"})
    form = client.post("/v1/detect", files={"image": ("photo.jpg", data, "image/jpeg")})
    assert raw.status_code == 200 and form.status_code == 200, (raw.text, form.text)
    a, b = raw.json(), form.json()
    assert a["boxes"] == b["boxes"] and a["labels"] == b["labels"] and a["model"] == "default"
    assert (a["width"], a["height"]) == Image.open(io.BytesIO(data)).size
    assert a["labels"] and set(a["labels"]) <= {"camera", "phone"}  # a camera photo: something found
    low = client.post("/v1/detect?score=0.05", content=data).json()
    assert len(low["scores"]) >= len(a["scores"]) and min(low["scores"]) >= 0.05


def _bomb_png() -> bytes:
    """A PNG of 20000 x 10000 pixels (200 Mpx) in a few kilobytes."""
    buf = io.BytesIO()
    Image.new("1", (20000, 10000)).save(buf, "PNG")
    return buf.getvalue()


def _strip_png() -> bytes:
    """A 40000 x 2 PNG: scaled to any model's input, its short side is under one pixel."""
    buf = io.BytesIO()
    Image.new("RGB", (40000, 2)).save(buf, "PNG")
    return buf.getvalue()


def test_framework_errors_and_bad_parameters_are_json_errors_too(client):
    """404, 405 and 422 speak the documented {"error": ...}; a score outside 0..1 is refused;
    no message names a Python object; /docs can upload (the body is in the schema)."""
    data = camera_photo()
    for method, path, status in [
        ("get", "/nowhere", 404),
        ("get", "/v1/detect", 405),
        ("post", "/v1/detect?score=abc", 422),
    ]:
        res = getattr(client, method)(path)
        assert res.status_code == status and set(res.json()) == {"error"}, res.text
    for score in ("5", "-1", "nan", "inf"):
        res = client.post(f"/v1/detect?score={score}", content=data)
        assert res.status_code == 422 and "score" in res.json()["error"], res.text
    res = client.post("/v1/detect", content=b"junk" * 100)
    assert res.status_code == 400 and "object at 0x" not in res.text
    body = client.get("/openapi.json").json()["paths"]["/v1/detect"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["image"]["format"] == "binary"


def test_live_answers_text_messages_and_bad_frames_and_goes_on(client):
    with client.websocket_connect("/v1/live") as ws:
        ws.send_text("hello")
        assert "binary" in ws.receive_json()["error"]
        ws.send_bytes(_strip_png())
        assert "elongated" in ws.receive_json()["error"]
        ws.send_bytes(camera_photo())
        assert "boxes" in ws.receive_json()
    with client.websocket_connect("/v1/live?score=7") as ws:
        assert "score" in ws.receive_json()["error"]


def test_bad_input_is_a_json_4xx_and_the_service_goes_on(app):
    small = create_app(Settings(model="default", max_upload_mb=1))
    data = camera_photo()
    cases = [
        (b"this is not an image", 400, "not a readable image"),
        (data[: len(data) // 2], 400, "truncated"),
        (_bomb_png(), 400, "over the limit"),
        (b"", 400, "no image"),
        (_strip_png(), 400, "elongated"),
        (b"\xff" * (2 * 1024 * 1024), 413, "over the limit of 1 MB"),
    ]
    with TestClient(small) as c:
        for body, status, words in cases:
            res = c.post("/v1/detect", content=body)
            assert res.status_code == status and words in res.json()["error"], (words, res.text)
        res = c.post("/v1/detect?model=../../etc/passwd", content=data)
        assert res.status_code == 404 and "no model" in res.json()["error"]
        broken = {"content-type": "multipart/form-data; boundary=x"}
        res = c.post("/v1/detect", content=b"--x\r\nbroken", headers=broken)
        assert res.status_code == 400
        assert c.post("/v1/detect", content=data).status_code == 200  # still serving
        assert c.get("/healthz").json()["status"] == "ok"


def test_a_flood_gets_503_with_retry_after_and_the_rest_are_answered():
    app = create_app(Settings(model="default", queue=1))
    data = camera_photo()

    async def flood() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            return await asyncio.gather(*(c.post("/v1/detect", content=data) for _ in range(8)))

    answers = asyncio.run(flood())
    codes = [r.status_code for r in answers]
    assert 200 in codes and 503 in codes, codes
    busy = next(r for r in answers if r.status_code == 503)
    assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["error"]


def test_live_frames_go_before_a_flood_of_uploads():
    """Four uploads in the service (one running, three waiting, a full queue of 4): a live frame
    sent then is detected next, not after them and not turned away busy."""
    app = create_app(Settings(model="default", queue=4))
    data = jpeg(sorted(PHONES.glob("*.jpg"))[0], 1600)
    done: list[str] = []
    with TestClient(app) as c:
        c.post("/v1/detect", content=data)  # the model loaded

        def upload(i: int) -> None:
            assert c.post("/v1/detect", content=data).status_code == 200
            done.append(f"upload {i}")

        uploads = [threading.Thread(target=upload, args=(i,)) for i in range(4)]
        with c.websocket_connect("/v1/live") as ws:
            for t in uploads:
                t.start()
            for _ in range(500):
                if c.get("/healthz").json()["waiting"] >= 4:
                    break
                time.sleep(0.01)
            assert c.get("/healthz").json()["waiting"] == 4
            ws.send_bytes(camera_photo())
            reply = ws.receive_json()
            done.append("live")
        for t in uploads:
            t.join()
    assert "boxes" in reply, reply
    assert done.index("live") <= 1, done  # after the upload that was running, if it ended first


def test_nothing_an_upload_carries_touches_the_disk(client, monkeypatch):
    """A 3 MB multipart upload (Starlette spools files over 1 MB to a temporary file) with
    every way to create a file refused: the request still succeeds."""
    noise = np.random.default_rng(0).integers(0, 256, (1000, 1000, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")
    assert buf.tell() > 2_500_000

    def refuse(*args, **kwargs):
        raise AssertionError("a file was created while serving")

    real_open = builtins.open

    def read_only_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            raise AssertionError(f"a file was opened for writing: {file}")
        return real_open(file, mode, *args, **kwargs)

    for name in ("TemporaryFile", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    monkeypatch.setattr(builtins, "open", read_only_open)
    res = client.post("/v1/detect", files={"image": ("noise.png", buf.getvalue(), "image/png")})
    assert res.status_code == 200, res.text


def test_a_token_guards_every_request_and_the_network_needs_one(capsys):
    app = create_app(Settings(model="default", token="s3cret"))
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 401
        assert c.get("/").status_code == 200 and "app.js" in c.get("/").text  # the page, which asks for it
        assert c.get("/healthz", headers={"authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/healthz", headers={"authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/?token=s3cret").status_code == 200
        assert c.get("/static/app.js").status_code == 200  # the page's own code, fetched without the token
        assert c.get("/v1/models").status_code == 401
        # the API page and its schema hold no data: open, with an Authorize button for the token
        assert c.get("/docs").status_code == 200 and c.get("/openapi.json").status_code == 200
        assert c.get("/v1/models").json() == {"error": "a token is required: Authorization: Bearer TOKEN or ?token="}
        with pytest.raises(WebSocketDenialResponse) as refused, c.websocket_connect("/v1/live") as ws:
            ws.receive_json()
        assert refused.value.status_code == 401 and "token" in refused.value.json()["error"]
        with c.websocket_connect("/v1/live?token=s3cret") as ws:
            ws.send_bytes(camera_photo())
            assert "boxes" in ws.receive_json()
    assert main(["serve", "--host", "0.0.0.0", "--port", "8765"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs --token" in err[0]


def test_live_frames_raise_an_alert_while_a_phone_is_in_view_and_drop_it_after(client):
    """Real frames: a phone photo drifting over five frames, then five street scenes; K/N = 2/3,
    no hold. The phone is one track: its alert starts at its second frame and ends in the streets."""
    photo = Image.open(sorted(PHONES.glob("*.jpg"))[0]).convert("RGB").resize((416, 416))
    phones = []
    for i in range(5):
        buf = io.BytesIO()
        photo.crop((8 * i, 0, 8 * i + 384, 384)).save(buf, "JPEG", quality=85)
        phones.append(buf.getvalue())
    streets = [jpeg(p) for p in sorted((ICDAR / "images").glob("*.jpg"))[:5]]
    replies = []
    with client.websocket_connect("/v1/live?alert=2/3&hold=0&score=0.5") as ws:
        for frame in phones + streets:
            ws.send_bytes(frame)
            replies.append(ws.receive_json())
    assert [r["frame"] for r in replies] == list(range(10)) and all(r["dropped"] == 0 for r in replies)
    assert [r["alert"] for r in replies] == [False] + [True] * 4 + [False] * 5
    assert all(len(r["tracks"]) == len(r["boxes"]) for r in replies)
    events = [e for r in replies for e in r["events"]]
    assert [(e["event"], e["track"], e["label"], e["frame"]) for e in events] == [
        ("alert_start", 1, "phone", 1),
        ("alert_end", 1, "phone", 5),  # the first frame without it: a hold of 0 s
    ]


def test_live_works_on_the_newest_frame_never_a_backlog(client):
    frames = [jpeg(p) for p in sorted(PHONES.glob("*.jpg"))[:8]]
    with client.websocket_connect("/v1/live") as ws:
        for frame in frames:  # all at once, faster than the model
            ws.send_bytes(frame)
        replies = [ws.receive_json()]
        while replies[-1]["frame"] != len(frames) - 1:
            replies.append(ws.receive_json())
        ws.send_bytes(b"not a jpeg")
        bad = ws.receive_json()
    assert len(replies) < len(frames)  # some frames were never detected on
    assert len(replies) + sum(r["dropped"] for r in replies) == len(frames)
    assert bad["frame"] == len(frames) and "not a readable image" in bad["error"]
    json.dumps(replies)  # plain JSON all the way


@contextmanager
def uvicorn_serving(app) -> Iterator[int]:
    """The app under a real uvicorn server in a thread, on a free port (yielded)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        for _ in range(100):
            if server.started:
                break
            time.sleep(0.1)
        yield port
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_live_socket_without_the_token_is_refused_401_by_a_real_server():
    """uvicorn answers the refused handshake with the HTTP status the docs name, not 403."""
    with uvicorn_serving(create_app(Settings(model="default", token="s3cret"))) as port:
        with pytest.raises(InvalidStatus) as refused:
            connect(f"ws://127.0.0.1:{port}/v1/live", open_timeout=10).close()
        assert refused.value.response.status_code == 401
        assert b"token" in refused.value.response.body
        with connect(f"ws://127.0.0.1:{port}/v1/live?token=s3cret", open_timeout=10) as ws:
            ws.send(camera_photo())
            assert "boxes" in json.loads(ws.recv(timeout=60))


def test_slow_and_vanishing_uploads_are_cut_off_quietly(app, monkeypatch):
    """A real server: an upload that declares 1 MB and sends 100 bytes is answered 408 once it
    stalls (not held for ever), and a client gone mid-upload logs no traceback."""
    from regiondet.serve import app as served

    monkeypatch.setattr(served, "READ_IDLE_S", 1.0)
    with uvicorn_serving(app) as port:
        head = f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: {1 << 20}\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
            s.sendall(head.encode() + b"x" * 100)
            start = time.monotonic()
            reply = s.recv(4096).decode(errors="replace")
            waited = time.monotonic() - start
            s.settimeout(2)
            while "\r\n\r\n" not in reply or not reply.rstrip().endswith("}"):  # the body may come in its own packet
                more = s.recv(4096).decode(errors="replace")
                if not more:
                    break
                reply += more
        assert reply.startswith("HTTP/1.1 408") and '"error"' in reply and waited < 10
        # uvicorn's loggers do not propagate to the root logger: listen on its own
        errors: list[logging.LogRecord] = []
        listener = logging.Handler(logging.ERROR)
        listener.emit = errors.append
        logging.getLogger("uvicorn").addHandler(listener)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
                s.sendall(head.encode() + b"x" * 100)
            time.sleep(1.5)
        finally:
            logging.getLogger("uvicorn").removeHandler(listener)
        assert not errors, errors[0].getMessage()


def test_serve_on_a_port_in_use_is_one_line_before_the_model_loads(capsys, monkeypatch):
    import socket

    from regiondet import cli

    monkeypatch.setattr(cli, "create_app", lambda *a, **k: pytest.fail("the model was loaded first"))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"port {port}" in err[0] and "cannot listen" in err[0]


def test_ctrl_c_stops_the_service_with_one_line(tmp_path):
    """`regiondet serve` as a user runs it: Ctrl-C ends it with "interrupted" and code 130 (no
    traceback), having served a request first."""
    proc, url = start_service(cwd=tmp_path)
    try:
        answer = httpx.post(url + "v1/detect", content=camera_photo(), timeout=30)
        assert answer.status_code == 200
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=30)
    finally:
        proc.kill()
    err = proc.stderr.read().decode().strip().splitlines()
    assert code == 130 and err[-1] == "regiondet: interrupted", err
    assert not any("Traceback" in line for line in err), err
    assert list(tmp_path.iterdir()) == []  # and it left nothing behind
