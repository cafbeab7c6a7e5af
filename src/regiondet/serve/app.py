"""`regiondet serve`: the detectors over HTTP, a WebSocket for live frames, and a web page.

Nothing a client sends is kept: uploads and frames are read into memory, decoded, detected on
and dropped; no request body is spooled to disk (Starlette would spool a multipart file over
1 MB: the body is read here, capped, and parsed from memory). Each request is bounded: a byte
limit (413), the decoder's pixel limit (400), and a bounded queue in front of the one model
worker (503 with Retry-After when full), so a flood or a hostile file costs a refusal, never
the service. On any address but loopback every request must carry the token.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from fastapi import Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartParser
from starlette.requests import ClientDisconnect

from regiondet import __version__
from regiondet.data.images import MAX_PIXELS, decode_upright
from regiondet.errors import UserError
from regiondet.inference.prediction import is_score
from regiondet.inference.predictor import Detector
from regiondet.inference.tracking import DEFAULT_HOLD_S, AlertTracker
from regiondet.inference.video import new_tracker, parse_alert, track_frame
from regiondet.models.zoo import MODELS, shipped_path
from regiondet.serve.device import DEVICE_FILES, DeviceModel, device_model

MB = 1024 * 1024
# an upload must keep arriving (a chunk at least every READ_IDLE_S) and be done in READ_TOTAL_S
READ_IDLE_S, READ_TOTAL_S = 10.0, 60.0
STATIC = "regiondet.serve.static"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
# The page, the API page and their scripts and styles: the same for everyone, no data in them,
# fetched by the browser without the token (the page then asks for it; /docs has Authorize).
PUBLIC_PREFIXES = ("/static/", "/static-offline-docs/", "/favicon.ico")
PUBLIC_PATHS = {"/", "/docs", "/docs/oauth2-redirect", "/openapi.json", "/sw.js", "/manifest.webmanifest"}
# /v1/detect's body for the OpenAPI page (the endpoint reads the raw request itself)
DETECT_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"image": {"type": "string", "format": "binary"}}}
        },
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
    },
}


class Busy(Exception):
    """The queue in front of the model is full."""


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class Settings:
    model: str = "default"  # the model a request gets when it names none (a shipped name or a file)
    token: str | None = None  # required on every request when set
    max_upload_mb: float = 20.0
    queue: int = 4  # requests that may wait for the model; more get 503
    score: float | None = None  # default score (else each model's own)
    runtime: str = "auto"  # ONNX Runtime for box models when installed (Detector.load)
    overrides: list[str] = field(default_factory=list)  # model.KEY=VALUE for the service's own model

    def overrides_for(self, name: str) -> list[str]:
        return self.overrides if name == self.model else []


# Cross-origin isolation (every response): WebAssembly threads need SharedArrayBuffer
ISOLATED = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
TOKEN_REQUIRED = "a token is required: Authorization: Bearer TOKEN or ?token="


@dataclass
class Worker:
    """The loaded detectors and the queue in front of them: one detection at a time (a CPU has no
    room for two), in two lanes of at most `queue` each: live frames go before waiting uploads,
    so a flood of /v1/detect delays a live alert by one detection at most, not by the queue."""

    settings: Settings
    detectors: dict[str, Detector] = field(default_factory=dict)
    busy: bool = False
    lanes: dict[bool, deque] = field(default_factory=lambda: {True: deque(), False: deque()})  # live?
    counts: dict[bool, int] = field(default_factory=lambda: {True: 0, False: 0})
    devices: dict[str, DeviceModel] = field(default_factory=dict)  # the page's graphs, made once per model
    making: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def waiting(self) -> int:
        """Requests and live frames, running or waiting (shown by /healthz)."""
        return self.counts[True] + self.counts[False]

    def available(self) -> list[dict]:
        """The models a client may pick: the service's own, and every installed shipped model."""
        out = [{"name": self.settings.model, "default": True, "about": _about(self.settings.model)}]
        for name, shipped in MODELS.items():
            if name == self.settings.model or name == "camera_phone":
                continue
            try:
                shipped_path(name)
            except UserError:
                continue  # not installed (the text extra)
            out.append({"name": name, "default": False, "about": shipped.about})
        return out

    def offered(self, name: str | None) -> str:
        """The model's name (the service's own when none), or 404 when clients may not pick it."""
        name = name or self.settings.model
        if name not in {m["name"] for m in self.available()}:
            raise ApiError(404, f"no model '{name}' here (GET /v1/models lists them)")
        return name

    def detector(self, name: str | None) -> Detector:
        name = self.offered(name)
        if name not in self.detectors:
            self.detectors[name] = Detector.load(
                name,
                score=self.settings.score,
                runtime=self.settings.runtime,
                overrides=self.settings.overrides_for(name),
            )
        return self.detectors[name]

    async def device(self, name: str | None) -> DeviceModel:
        """A model's graphs and settings for the page's device mode, made on first request (a
        few seconds: the checkpoint exported to ONNX in memory) and kept, without loading the
        model on the server; the score is the one the service detects at."""
        name = self.offered(name)
        async with self.making:
            if name not in self.devices:
                try:
                    made = await run_in_threadpool(device_model, name, self.settings.overrides_for(name))
                except UserError as e:
                    raise ApiError(400, str(e)) from None
                if self.settings.score is not None:  # as Detector.load takes it: the service's score first
                    made.settings["score"] = self.settings.score
                self.devices[name] = made
        return self.devices[name]

    async def run(self, fn, *args, live: bool = False):
        """fn(*args) in a thread once the model is free and no live frame (for an upload: nor an
        earlier upload) waits; Busy if this lane already holds `queue`."""
        if self.counts[live] >= self.settings.queue:
            raise Busy
        self.counts[live] += 1
        try:
            await self._turn(self.lanes[live])
            try:
                return await run_in_threadpool(fn, *args)
            finally:
                self._hand_on()
        finally:
            self.counts[live] -= 1

    async def _turn(self, lane: deque) -> None:
        if not self.busy:
            self.busy = True
            return
        turn = asyncio.get_running_loop().create_future()
        lane.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn in lane:
                lane.remove(turn)
            elif turn.done() and not turn.cancelled():
                self._hand_on()  # the turn came as the waiter left: pass it on
            raise

    def _hand_on(self) -> None:
        """The model is free: the first live frame waiting gets it, else the first upload."""
        for lane in (self.lanes[True], self.lanes[False]):
            while lane:
                turn = lane.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self.busy = False


def _check_score(score: float | None) -> None:
    """A score from 0 to 1: 5 or nan would silently find nothing, -1 everything."""
    if score is not None and not is_score(score):
        raise ApiError(422, f"score: a number from 0 to 1 (got {score})")


def _about(name: str) -> str:
    return MODELS[name].about if name in MODELS else Path(name).name


def detect_bytes(det: Detector, data: bytes, name: str, score: float | None) -> dict:
    """Detections on an encoded image: detect's JSON plus the image's size and the model."""
    image = decode_upright(data, name)
    pred = det.predict(image, score=score)
    return {"width": image.width, "height": image.height, **pred.to_json()}


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refused (413) as soon as it passes `limit` bytes, announced or not; an
    upload that stalls (nothing for READ_IDLE_S) or drags on past READ_TOTAL_S is cut off (408),
    so slow senders cannot hold the service's connections; a client gone mid-upload is one
    quiet 400, not a logged traceback."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"upload of {int(declared) / MB:.1f} MB is over the limit of {limit / MB:.0f} MB")
    chunks, size = [], 0
    stream = request.stream().__aiter__()
    deadline = time.monotonic() + READ_TOTAL_S
    while True:
        wait = min(READ_IDLE_S, deadline - time.monotonic())
        try:
            chunk = await asyncio.wait_for(stream.__anext__(), max(wait, 0.001))
        except StopAsyncIteration:
            break
        except asyncio.TimeoutError:  # noqa: UP041 - not the builtin TimeoutError before Python 3.11
            raise ApiError(408, f"the upload was too slow: send it within {READ_TOTAL_S:.0f} s") from None
        except ClientDisconnect:
            raise ApiError(400, "the client went away during the upload") from None
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"upload is over the limit of {limit / MB:.0f} MB")
        chunks.append(chunk)
    return b"".join(chunks)


async def _image_from(request: Request, limit: int) -> tuple[bytes, str]:
    """(image bytes, name) from a multipart upload (field `image` or the first file) or a raw body."""
    body = await _read_body(request, limit)
    kind = request.headers.get("content-type", "")
    if not kind.startswith("multipart/form-data"):
        if not body:
            raise ApiError(400, "no image: send it as the request body or as a multipart file field 'image'")
        return body, "upload"
    parser = MultiPartParser(request.headers, _once(body), max_files=1, max_fields=10, max_part_size=limit)
    parser.spool_max_size = limit + 1  # a file part stays in memory: never rolled over to a temporary file
    try:
        form = await parser.parse()
    except Exception as e:  # malformed multipart
        raise ApiError(400, f"malformed multipart upload ({e})") from None
    part = form.get("image") or next((v for v in form.values() if hasattr(v, "read")), None)
    if part is None or not hasattr(part, "read"):
        raise ApiError(400, "no file in the upload: send the image in a field named 'image'")
    data = await part.read()
    await form.close()
    return data, part.filename or "upload"


async def _once(body: bytes):
    yield body


def _token_ok(given: str | None, token: str | None) -> bool:
    return token is None or (given is not None and hmac.compare_digest(given.encode(), token.encode()))


def _given_token(headers, query) -> str | None:
    auth = headers.get("authorization", "")
    return auth[7:] if auth.lower().startswith("bearer ") else query.get("token")


def create_app(settings: Settings) -> FastAPIOffline:
    """The service: GET / (the page), GET /healthz, GET /v1/models, POST /v1/detect, WS /v1/live."""
    worker = Worker(settings)
    worker.detector(None)  # load the default model now: a bad --model fails at start, not per request
    app = FastAPIOffline(  # FastAPI with the /docs page's scripts served locally, not from a CDN
        title="regiondet",
        summary="Cameras, phones and scene text in images and live frames; nothing is stored.",
        version=__version__,
    )
    limit = int(settings.max_upload_mb * MB)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        public = request.url.path.startswith(PUBLIC_PREFIXES) or request.url.path in PUBLIC_PATHS
        if not public and not _token_ok(_given_token(request.headers, request.query_params), settings.token):
            return JSONResponse({"error": TOKEN_REQUIRED}, 401)
        response = await call_next(request)
        # cross-origin isolated: the page may run ONNX Runtime Web with threads (SharedArrayBuffer)
        response.headers.update(ISOLATED)
        return response

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, e: ApiError):
        return JSONResponse({"error": e.message}, e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, e: StarletteHTTPException):  # 404, 405, ... as documented
        return JSONResponse({"error": str(e.detail)}, e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, e: RequestValidationError):  # 422: name the field, one line
        first = e.errors()[0] if e.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "request"
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid value')}"}, 422)

    @app.get("/healthz", summary="Liveness: the service answers and its default model is loaded")
    async def healthz() -> dict:
        default = worker.detector(None)
        return {
            "status": "ok",
            "model": settings.model,
            "runtime": default.runtime,
            "version": __version__,
            "waiting": worker.waiting,
        }

    @app.get("/v1/models", summary="The models a request may name")
    async def models() -> dict:
        return {"models": worker.available()}

    @app.post(
        "/v1/detect",
        summary="Detect on one image",
        description=(
            "Send the image as the request body (any image type) or as a multipart file field "
            "`image`. Returns `boxes` (x1, y1, x2, y2 pixels), `labels`, `scores`, `polygons` for "
            f"text models, `ms`, the image's `width` and `height`. Limits: the upload size, "
            f"{MAX_PIXELS / 1e6:.0f} Mpx per image, and a queue (503 with Retry-After when full)."
        ),
        openapi_extra={"requestBody": DETECT_BODY},
    )
    async def detect(request: Request, model: str | None = None, score: float | None = None) -> dict:
        _check_score(score)
        data, name = await _image_from(request, limit)
        det = worker.detector(model)
        try:
            result = await worker.run(detect_bytes, det, data, name, score)
        except Busy:
            raise ApiError(503, "busy: too many requests waiting, try again shortly", {"Retry-After": "1"}) from None
        except UserError as e:
            raise ApiError(400, str(e)) from None
        return {"model": model or settings.model, **result}

    @app.websocket("/v1/live")
    async def live(
        ws: WebSocket,
        model: str | None = None,
        score: float | None = None,
        alert: str = "3/5",
        hold: float = DEFAULT_HOLD_S,
    ):
        """Binary messages in (encoded frames, e.g. JPEG), one JSON message out per frame
        detected: the newest frame each time the model is free, the ones in between dropped.
        `alert` K/N starts a lens's alert, which ends after `hold` seconds out of view."""
        if not _token_ok(_given_token(ws.headers, ws.query_params), settings.token):
            await refuse(ws, 401, TOKEN_REQUIRED)
            return
        await ws.accept()
        try:
            _check_score(score)
            det = worker.detector(model)
            rule = parse_alert(alert, hold)
        except (ApiError, UserError) as e:
            await ws.send_json({"error": e.message if isinstance(e, ApiError) else str(e)})
            await ws.close(code=4400)
            return
        await _live_loop(ws, worker, det, score, new_tracker(det, rule, score), limit)

    @app.get(
        "/v1/device/{model}/{file}",
        summary="A box model's graphs for the page's device mode (ONNX Runtime Web) and their settings",
        description=(
            "`settings.json` (classes, score, read size, post-processing settings), `detector.onnx` "
            "and `verifier.onnx`: made from the model's checkpoint on first request. The graphs take "
            "the frame as RGBA bytes (height x width x 4); see regiondet/serve/static/device.js."
        ),
    )
    async def device(request: Request, model: str, file: str) -> Response:
        if file not in DEVICE_FILES:
            raise ApiError(404, f"no device file '{file}' (one of {', '.join(DEVICE_FILES)})")
        made = await worker.device(model)
        if file == "settings.json":
            return JSONResponse({"model": model, **made.settings}, headers={"Cache-Control": "no-cache"})
        graph = made.detector if file == "detector.onnx" else made.verifier
        if graph is None:
            raise ApiError(404, f"model '{model}' has no crop verifier")
        return revalidated(request, graph, "application/octet-stream")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(static_bytes("index.html"))

    @app.get("/sw.js", include_in_schema=False)
    async def service_worker(request: Request) -> Response:
        """At the root, so that its scope is the whole page (installable, starts offline)."""
        return revalidated(request, static_bytes("sw.js"), "text/javascript")

    @app.get("/manifest.webmanifest", include_in_schema=False)
    async def manifest(request: Request) -> Response:
        return revalidated(request, static_bytes("manifest.webmanifest"), "application/manifest+json")

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/static/ort/{name}", include_in_schema=False)
    async def runtime(request: Request, name: str) -> Response:
        """ONNX Runtime Web's files (vendored: static/ort/VERSION.json)."""
        return static_file(request, "ort", name, {".mjs": "text/javascript", ".wasm": "application/wasm"})

    @app.get("/static/{name}", include_in_schema=False)
    async def static(request: Request, name: str) -> Response:
        return static_file(request, "", name, {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"})

    return app


def track_bytes(
    det: Detector, tracker: AlertTracker, data: bytes, index: int, seconds: float, score: float | None
) -> dict:
    """One live frame: detect's JSON, the image's size, each detection's track id, the alert."""
    image = decode_upright(data, f"frame {index}")
    pred, fields = track_frame(det, tracker, image, index, seconds, score)
    return {"width": image.width, "height": image.height, **pred.to_json(), **fields}


async def refuse(ws: WebSocket, status: int, message: str) -> None:
    """Turn a WebSocket handshake down with an HTTP status and a JSON error, as any other request
    (the WebSocket Denial Response extension, which uvicorn serves); where the server lacks it,
    close before accepting with 4000 + status (a bare close is answered 403 to the client)."""
    if "websocket.http.response" in ws.scope.get("extensions", {}):
        await ws.send_denial_response(JSONResponse({"error": message}, status))
    else:
        await ws.close(code=4000 + status, reason=message[:120])


async def _live_loop(
    ws: WebSocket, worker: Worker, det: Detector, score: float | None, tracker: AlertTracker, limit: int
):
    """Receive frames into a one-frame slot (a newer frame replaces one not yet taken) while
    detecting on the slot's frame whenever it changes; each lens is tracked and its alert's
    start and end sent as events."""
    slot: dict = {"frame": None, "index": -1, "dropped": 0}
    ready = asyncio.Event()
    closed = asyncio.Event()
    start = time.monotonic()

    async def receive() -> None:
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    break
                data = message.get("bytes")
                if data is None:  # a text message: say what the socket takes
                    await ws.send_json({"error": "send frames as binary messages (an encoded image each)"})
                    continue
                if slot["frame"] is not None:
                    slot["dropped"] += 1
                slot["frame"], slot["index"] = (data if len(data) <= limit else b""), slot["index"] + 1
                ready.set()
        finally:
            closed.set()
            ready.set()

    receiver = asyncio.create_task(receive())
    try:
        while True:
            await ready.wait()
            ready.clear()
            if closed.is_set() and slot["frame"] is None:
                break
            data, index, dropped = slot["frame"], slot["index"], slot["dropped"]
            slot["frame"], slot["dropped"] = None, 0
            if data is None:
                continue
            seconds = round(time.monotonic() - start, 3)
            try:
                if not data:
                    raise UserError(f"frame over the limit of {limit / MB:.0f} MB")
                result = await worker.run(track_bytes, det, tracker, data, index, seconds, score, live=True)
            except Busy:
                await ws.send_json({"frame": index, "error": "busy", "dropped": dropped})
                continue
            except UserError as e:
                await ws.send_json({"frame": index, "error": str(e), "dropped": dropped})
                continue
            result.setdefault("events", [])
            await ws.send_text(json.dumps({"frame": index, "time_s": seconds, "dropped": dropped, **result}))
    except WebSocketDisconnect:
        pass
    finally:
        receiver.cancel()


@functools.cache
def static_bytes(name: str) -> bytes:
    """A file of the page (read once: the package's files do not change while it runs)."""
    return (resources.files(STATIC) / name).read_bytes()


@functools.cache
def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def revalidated(request: Request, data: bytes, media_type: str) -> Response:
    """The bytes with an ETag, or 304 when the client (the page's service worker) has them: a
    visit re-checks the 60 MB of model and runtime for the price of a request."""
    tag = _etag(data)
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if tag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=media_type, headers=headers)


def static_file(request: Request, folder: str, name: str, kinds: dict[str, str]) -> Response:
    """A file of the page's folder (or of its subfolder), of the kinds named, revalidated."""
    suffix = Path(name).suffix
    if suffix not in kinds or "/" in name or name.startswith("."):
        raise ApiError(404, "not found")
    try:
        return revalidated(request, static_bytes(f"{folder}/{name}" if folder else name), kinds[suffix])
    except FileNotFoundError:
        raise ApiError(404, "not found") from None


def listen_socket(host: str, port: int) -> socket.socket:
    """The service's socket, bound before the model loads: a port another program holds is one
    line at once, not "serving on ..." followed by uvicorn's error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise UserError(
            f"cannot listen on {host} port {port} ({e.strerror or e}): is another program using it?"
        ) from None
    return sock


def check_listen(host: str, token: str | None) -> None:
    """Listening beyond this machine needs a token: the page and API would be open to the network."""
    if host not in LOOPBACK and not token:
        raise UserError(f"listening on {host} needs --token (or REGIONDET_TOKEN): every request must then carry it")
