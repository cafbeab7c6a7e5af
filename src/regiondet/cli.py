"""`regiondet` command line: train, evaluate, detect, export, data ... (one entry point)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from regiondet.engine.launch import LaunchFailed
from regiondet.errors import UserError
from regiondet.evaluation.box_peers import PEERS as BOX_PEERS
from regiondet.evaluation.text_peers import PEERS

DEFAULT_MODEL = "default"


def _class_map(items: list[str] | None) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for item in items or []:
        src, sep, dst = item.partition("=")
        if not sep:
            raise UserError(f"--class-map '{item}' must look like 'source=model_class' (empty target drops it)")
        out[src.strip()] = dst.strip() or None
    return out


def cmd_train(a: argparse.Namespace) -> None:
    from regiondet.config import load_config
    from regiondet.engine.train import resume_config, train

    if a.nproc and a.nproc > 1 and "LOCAL_RANK" not in os.environ:  # the launcher, not a worker
        from regiondet.engine.launch import launch_train

        cfg = load_config(a.config, a.set)  # a bad config is one line here, not once per process
        argv = [a.config, *(["--resume"] if a.resume else []), *(x for s in a.set for x in ("--set", s))]
        hint = f"regiondet train {Path(cfg.train.out) / 'config.yaml'} --resume --nproc {a.nproc}"
        launch_train(argv, a.nproc, a.quiet, hint)
        print(cfg.train.out)
        return
    cfg = load_config(a.config, a.set)
    if a.resume:
        cfg = resume_config(cfg, a.set)
    out = train(cfg, resume=a.resume, progress=not a.quiet)
    print(out)


def cmd_evaluate(a: argparse.Namespace) -> None:
    from regiondet.data.dataset import ClassMapper, as_negative
    from regiondet.data.spec import load_spec
    from regiondet.evaluation.detection import evaluate
    from regiondet.inference.predictor import Detector
    from regiondet.io import atomic_write_text

    if a.threads:  # before loading: an ONNX Runtime session takes its thread count at creation
        import torch

        torch.set_num_threads(a.threads)
    if a.detections:
        from regiondet.evaluation.recorded import RecordedDetector

        if a.model or a.set:
            raise UserError("--detections scores a file of detections: leave out --model and --set")
        det = RecordedDetector(a.detections, a.score)
    else:
        det = Detector.load(a.model or DEFAULT_MODEL, overrides=a.set)
    raw = [s for spec in a.data for s in load_spec(spec)]
    if a.detections:  # the data's classes too, so a class the file never names scores 0
        names = {k.lower(): v for k, v in _class_map(a.class_map).items()}
        det.with_classes([t for s in raw for lab in s.labels if (t := names.get(lab.lower(), lab))])
    mapper = ClassMapper(det.classes, {**det.config.data.class_map, **_class_map(a.class_map)})
    samples = mapper.apply_all(raw)
    negatives = [as_negative(s) for spec in a.negatives or [] for s in load_spec(spec)]
    if a.detections:
        det.require(samples + negatives)
    saved: list[dict] | None = [] if a.save_detections else None
    if det.config.model.task == "text":
        from regiondet.evaluation.text_detection import evaluate_text

        res = evaluate_text(det, samples, a.score, progress=not a.quiet, saved=saved)
    else:
        plot = Path(a.plot) if a.plot else (Path(a.json).with_suffix(".pr.png") if a.json else None)
        res = evaluate(det, samples, negatives, a.score, a.voc07, plot, progress=not a.quiet, saved=saved)
    if saved is not None:
        lines = [{**line, "eval_score": res["score"]} for line in saved]  # --detections' default score
        atomic_write_text(Path(a.save_detections), "".join(json.dumps(line) + "\n" for line in lines))
    res["model"] = f"detections: {a.detections}" if a.detections else str(a.model or DEFAULT_MODEL)
    res["data"], res["negatives_data"] = a.data, a.negatives or []
    if a.json:
        atomic_write_text(Path(a.json), json.dumps(res, indent=2) + "\n")
    failed = res.pop("failures", [])
    print(json.dumps(res, indent=2))
    if failed:
        where = f"listed in {a.json}" if a.json else "list them with --json"
        print(f"regiondet: {len(failed)} images with a missed object or a false alarm ({where})", file=sys.stderr)


def _expand_images(paths: list[str]) -> list[Path]:
    """Image files named or inside the named folders (not their sub-folders)."""
    files = [f for f, _ in _expand_inputs(paths, videos=False)]
    if not files:
        raise UserError(f"no images found in {', '.join(paths)}")
    return files


def _expand_inputs(paths: list[str], videos: bool = True, recursive: bool = False) -> list[tuple[str | Path, Path]]:
    """(input, output name) pairs: images, and with `videos` video files, stream URLs and camera
    indices; a folder gives the images (and videos) in it, with `recursive` also in its
    sub-folders, their output names keeping the sub-folder so equal file names do not collide."""
    from regiondet.data.images import IMAGE_SUFFIXES
    from regiondet.inference.video import VIDEO_SUFFIXES, is_live, output_name

    wanted = IMAGE_SUFFIXES | (VIDEO_SUFFIXES if videos else set())
    items: list[tuple[str | Path, Path]] = []
    for text in paths:
        p = Path(text)
        if videos and is_live(text):
            items.append((text, Path(output_name(text))))
        elif p.is_dir():
            found = p.rglob("*") if recursive else p.iterdir()
            inside = sorted(f for f in found if f.is_file() and f.suffix.lower() in wanted)
            items += [(f, f.relative_to(p).with_suffix("")) for f in inside]
        elif p.exists():
            items.append((p, Path(p.stem)))
        else:
            raise UserError("no such file or folder", p)
    return _unique_outputs(items)


def _unique_outputs(items: list[tuple[str | Path, Path]]) -> list[tuple[str | Path, Path]]:
    """Output names that never write one drawn file over another: inputs whose drawn files
    would share a name (x.jpg and x.png both drawn as x.jpg; v.avi and v.mp4 as v.mp4) keep
    their source suffix in it (x_jpg.jpg, x_png.jpg); the same input named twice is an error."""
    from regiondet.inference.video import is_video

    def drawn(f: str | Path, name: Path) -> str:
        return str(name) + (".mp4" if is_video(f) else ".jpg")

    groups: dict[str, list[int]] = {}
    for i, (f, name) in enumerate(items):
        groups.setdefault(drawn(f, name), []).append(i)
    out = list(items)
    for members in groups.values():
        if len(members) < 2:
            continue
        for i in members:
            f, name = items[i]
            suffix = Path(str(f)).suffix.lstrip(".").lower()
            out[i] = (f, name.with_name(f"{name.name}_{suffix}") if suffix else name)
    seen: dict[str, str | Path] = {}
    for f, name in out:
        key = drawn(f, name)
        if key in seen:
            raise UserError(f"named twice (also as {seen[key]}): each input once, please", f)
        seen[key] = f
    return out


def _print_line(line: str) -> None:
    print(line, flush=True)


def cmd_detect(a: argparse.Namespace) -> None:
    from regiondet.data.images import load_upright
    from regiondet.inference.draw import draw_prediction
    from regiondet.inference.predictor import Detector
    from regiondet.inference.video import detect_video, is_live, is_video, parse_alert

    if a.stride < 1:
        raise UserError("--stride must be at least 1")
    alert = parse_alert(a.alert) if a.alert else None
    det = Detector.load(a.model or ("text" if a.task == "text" else DEFAULT_MODEL), score=a.score, overrides=a.set)
    items = _expand_inputs(a.paths, recursive=a.recursive)
    if not items:
        raise UserError(f"no images or videos found in {', '.join(a.paths)}")
    live = [str(f) for f, _ in items if is_live(str(f))]
    if live and a.stride > 1 and not a.buffered:
        raise UserError("--stride: a live source gives its newest frame; add --buffered to stride it", live[0])
    out = Path(a.out) if a.out else None
    failed = 0
    for f, name in items:
        target = out / name.parent if out else None
        if target:
            target.mkdir(parents=True, exist_ok=True)
        try:
            if is_video(f):
                detect_video(det, f, target, a.stride, _print_line, alert, a.buffered, name=name.name)
                continue
            image = load_upright(Path(f))
        except UserError as e:  # one bad file in a folder must not stop the others
            print(f"regiondet: skipped: {e}", file=sys.stderr)
            failed += 1
            continue
        pred = det.predict(image)
        print(json.dumps({"file": str(f), **pred.to_json(), "ms": round(pred.seconds * 1000, 1)}), flush=True)
        if target:
            draw_prediction(image, pred, det.classes).save(target / f"{name.name}.jpg", quality=90)
    if failed == len(items):
        raise UserError("no image or video could be read")


def cmd_export(a: argparse.Namespace) -> None:
    from regiondet.inference.predictor import model_from_checkpoint, resolve_model_path
    from regiondet.models.checkpoint import save_checkpoint

    model, cfg, ckpt = model_from_checkpoint(resolve_model_path(a.checkpoint), a.set)
    if a.average:
        from regiondet.models.checkpoint import average_into

        average_into(model, [resolve_model_path(a.checkpoint), *map(Path, a.average)])
    score = a.score if a.score is not None else float(ckpt.get("default_score", cfg.train.eval_score))
    out = Path(a.out)
    if out.suffix.lower() == ".onnx":
        from regiondet.inference.onnx_model import export_onnx

        export_onnx(model.float(), cfg, score, out)
    else:
        extra = {"metrics": ckpt.get("metrics", {}), "default_score": score}
        save_checkpoint(out, model, cfg, half=not a.fp32, **extra)
    print(f"{out}: {out.stat().st_size / 1e6:.1f} MB")


def cmd_stats(a: argparse.Namespace) -> None:
    from regiondet.config import load_config
    from regiondet.data.spec import load_spec
    from regiondet.data.stats import dataset_stats, format_stats

    if (a.set or a.suggest_anchors) and not a.config:
        flag = "--set" if a.set else "--suggest-anchors"
        raise UserError(f"{flag} works on the config given with --config; name one")
    model_cfg = load_config(a.config, a.set).model if a.config else None
    for spec in a.specs:
        samples = load_spec(spec)
        st = dataset_stats(samples)
        text = format_stats(spec, st)
        if model_cfg is not None:
            from regiondet.models.anchor_fit import anchor_fit, format_anchor_fit

            st["anchor_fit"] = anchor_fit(samples, model_cfg)
            text += "\n" + format_anchor_fit(st["anchor_fit"])
            if a.suggest_anchors:
                from dataclasses import replace

                from regiondet.models.anchor_fit import suggest_anchor_sizes

                sizes = suggest_anchor_sizes(samples, model_cfg)
                fit = anchor_fit(samples, replace(model_cfg, anchor_sizes=sizes))
                st["anchor_suggestion"] = {"anchor_sizes": sizes, **fit}
                flat = json.dumps(sizes).replace(" ", "")
                text += f"\n  suggested (same form, --set model.anchor_sizes={flat}):\n" + format_anchor_fit(fit)
        print(json.dumps({"spec": spec, **st}) if a.json else text)


def cmd_mine(a: argparse.Namespace) -> None:
    from regiondet.data.dataset import ClassMapper, as_negative
    from regiondet.data.spec import load_spec
    from regiondet.engine.mining import mine_false_alarms, write_hard_examples
    from regiondet.inference.predictor import Detector

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    det = Detector.load(a.model, a.score)
    mapper = ClassMapper(det.classes, {**det.config.data.class_map, **_class_map(a.class_map)})
    if not a.specs and not a.negatives:
        raise UserError("name images to search: labelled SPECs, or object-free ones with --negatives")
    pool = [s for spec in a.specs for s in mapper.apply_all(load_spec(spec))]
    pool += [as_negative(s) for spec in a.negatives for s in load_spec(spec)]
    rows = mine_false_alarms(det, pool, det.score, progress=not a.quiet)
    where = ", ".join(a.specs + a.negatives)
    note = f"false alarms of {a.model} at score {det.score:g} on {where}: {len(rows)} of {len(pool)} images"
    write_hard_examples(Path(a.out), rows, note)
    print(f"regiondet: {note}; written to {a.out} (add txt:{a.out} to data.train, or to data.negatives if object-free)")


def cmd_openimages(a: argparse.Namespace) -> None:
    from regiondet.data.formats.openimages import prepare_openimages

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
    from regiondet.data.formats.openimages import download_openimages

    fetched, skipped, failures = download_openimages(Path(a.dir), a.workers)
    for f in failures[:10]:
        print(f"regiondet: failed: {f}", file=sys.stderr)
    print(f"fetched {fetched}, already present {skipped}, failed {len(failures)}")
    if failures:
        raise UserError(f"{len(failures)} downloads failed; run the same command again to retry them")


def cmd_convert(a: argparse.Namespace) -> None:
    from regiondet.data.formats.coco import write_coco
    from regiondet.data.spec import load_spec

    samples = [s for spec in a.specs for s in load_spec(spec)]
    classes = a.classes or sorted({lab for s in samples for lab in s.labels})
    write_coco(samples, classes, Path(a.out))
    print(f"{a.out}: {len(samples)} images, {sum(len(s.boxes) for s in samples)} boxes, classes {classes}")


def cmd_grid(a: argparse.Namespace) -> None:
    from regiondet.experiments.grid import cell_state, load_grid, run_grid

    if a.list:
        g, cells = load_grid(Path(a.grid))
        for c in cells:
            print(f"{cell_state(g, c):8s} {c.name}")
        return
    for out in run_grid(Path(a.grid), a.only, progress=not a.quiet, reevaluate=a.reevaluate):
        print(out)


def cmd_report(a: argparse.Namespace) -> None:
    from regiondet.experiments.report import write_report

    pending, out, g = [], a.out, None
    if a.grid:
        from regiondet.experiments.grid import load_grid

        g, cells = load_grid(Path(a.grid))
        pending = [c.name for c in cells]
        out = out or g.get("report")
    out = out or "docs/experiments.md"
    n = write_report(Path(a.runs), Path(out), pending=pending, grid=g)
    print(f"{out}: {n} cells")


def cmd_synth(a: argparse.Namespace) -> None:
    from regiondet.data.spec import load_spec
    from regiondet.data.synthetic import write_synthetic_set

    backgrounds = [s for spec in a.backgrounds for s in load_spec(spec)]
    n = write_synthetic_set(backgrounds, Path(a.out), a.count, a.seed, a.crop)
    print(f"{a.out}: {n} images; read them with totaltext:{a.out}")


def cmd_benchmark_text(a: argparse.Namespace) -> None:
    from regiondet.data.spec import load_spec
    from regiondet.evaluation.text_benchmark import format_table, run_text_benchmark
    from regiondet.io import atomic_write_text

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    samples = [s for spec in a.data for s in load_spec(spec)]
    if not samples:
        raise UserError(f"no images in {', '.join(a.data)}")
    model = None if a.model.lower() == "none" else a.model

    def save(rows: list[dict]) -> None:  # after every method: a failure later keeps these
        if a.json:
            atomic_write_text(Path(a.json), json.dumps({"data": a.data, "rows": rows}, indent=2) + "\n")
        if a.markdown:
            atomic_write_text(Path(a.markdown), format_table(rows) + "\n")

    rows = run_text_benchmark(model, a.peers, samples, a.score, a.threads, progress=not a.quiet, on_row=save)
    print(format_table(rows))


def cmd_benchmark_boxes(a: argparse.Namespace) -> None:
    from regiondet.evaluation.box_benchmark import format_box_table, run_box_benchmark
    from regiondet.io import atomic_write_text

    if a.threads:
        import torch

        torch.set_num_threads(a.threads)

    def save(rows: list[dict]) -> None:  # after every row: a failure later keeps these
        if a.json:
            atomic_write_text(Path(a.json), json.dumps({"data": a.data, "rows": rows}, indent=2) + "\n")
        if a.markdown:
            atomic_write_text(Path(a.markdown), format_box_table(rows) + "\n")

    rows = run_box_benchmark(
        a.model, a.peers, a.data, _class_map(a.class_map), a.negatives, a.score, a.threads, not a.quiet, save
    )
    print(format_box_table(rows))


def cmd_benchmark_speed(a: argparse.Namespace) -> None:
    import torch

    from regiondet.evaluation.speed import format_speed, load_images, speed_benchmark
    from regiondet.io import atomic_write_text

    if a.threads:
        torch.set_num_threads(a.threads)
    paths = _expand_images(a.images)
    res = speed_benchmark(a.model, load_images(paths, a.size or None), a.runs, a.set)
    res.update(model=a.model, size=a.size, images=len(paths), overrides=a.set)
    if a.json:
        atomic_write_text(Path(a.json), json.dumps(res, indent=2) + "\n")
    print(format_speed(res))


INFER_SET_HELP = "change an inference setting of the model, e.g. model.rpn_post_nms_top_n_test=100"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="regiondet", description=__doc__)
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a detector from a YAML config")
    t.add_argument("config")
    t.add_argument("--resume", action="store_true", help="continue the run in the config's train.out")
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    t.add_argument("--nproc", type=int, help="train in N local processes (DistributedDataParallel; gloo on CPU)")
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
    e.add_argument("--score", type=float, help="score for the rates (default: the model's)")
    e.add_argument("--voc07", action="store_true", help="11-point VOC2007 AP instead of all-point")
    e.add_argument("--json", help="write the metrics here (and the PR curve beside it)")
    e.add_argument("--plot", help="PR-curve PNG path")
    e.add_argument("--class-map", action="append", metavar="SRC=DST", help="map a data class to a model class")
    e.add_argument("--threads", type=int, help="torch CPU threads")
    e.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE", help=INFER_SET_HELP)
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("detect", help="detect objects in images, videos, streams or folders")
    d.add_argument(
        "paths", nargs="+", help="image or video files, folders, rtsp:// / http:// streams, or a camera index (0)"
    )
    d.add_argument("--model", help="checkpoint file or shipped model name (default: the task's shipped model)")
    d.add_argument("--task", choices=["box", "text"], default="box", help="which shipped model to use")
    d.add_argument("--score", type=float)
    d.add_argument("--out", help="folder for annotated images (and .mp4 videos)")
    d.add_argument("--stride", type=int, default=1, help="video files: detect on every Nth frame")
    d.add_argument(
        "--buffered",
        action="store_true",
        help="cameras and streams: detect on every frame in turn, even falling behind (default: the newest frame)",
    )
    d.add_argument("--recursive", "-r", action="store_true", help="also look in sub-folders")
    d.add_argument("--alert", metavar="K/N", help="videos: alert while K of the last N frames have a detection")
    d.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE", help=INFER_SET_HELP)
    d.set_defaults(func=cmd_detect)

    x = sub.add_parser("export", help="a compact inference checkpoint (fp16), or an .onnx file for ONNX Runtime")
    x.add_argument("checkpoint", help="a training checkpoint, or a shipped model name (default, text)")
    x.add_argument("out", help="model.pt (fp16 checkpoint) or model.onnx")
    x.add_argument("--score", type=float, help="default score threshold stored in the model")
    x.add_argument("--fp32", action="store_true")
    x.add_argument(
        "--average", nargs="+", metavar="CKPT", help="average the weights with these checkpoints of the same model"
    )
    x.add_argument("--set", action="append", default=[], metavar="model.KEY=VALUE", help=INFER_SET_HELP)
    x.set_defaults(func=cmd_export)

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

    b = sub.add_parser("benchmark", help="speed, and comparisons with other detectors").add_subparsers(
        dest="bench", required=True
    )
    bt = b.add_parser("text", help="regiondet's text model and offline peers: P, R, H-mean, ms/image")
    bt.add_argument("--data", action="append", required=True, metavar="SPEC", help="labelled text images")
    bt.add_argument("--model", default="text", help="regiondet text model (file or shipped name; 'none' to skip)")
    bt.add_argument("--peers", nargs="*", default=list(PEERS), help=f"any of {', '.join(PEERS)}")
    bt.add_argument("--score", type=float, help="regiondet score threshold (default: the model's)")
    bt.add_argument("--threads", type=int, help="CPU threads for every method")
    bt.add_argument("--json", help="write all figures here")
    bt.add_argument("--markdown", help="write the table here")
    bt.set_defaults(func=cmd_benchmark_text)

    bb = b.add_parser("boxes", help="regiondet's camera/phone model and a peer (COCO SSD): AP50 per set, ms/image")
    bb.add_argument("--data", action="append", required=True, metavar="SPEC", help="a labelled set (one row each)")
    bb.add_argument("--negatives", action="append", metavar="SPEC", help="object-free images (false-alarm row)")
    bb.add_argument("--model", default=DEFAULT_MODEL, help="regiondet box model (file or shipped name)")
    bb.add_argument("--peers", nargs="*", default=list(BOX_PEERS), help=f"any of {', '.join(BOX_PEERS)}")
    bb.add_argument("--class-map", action="append", default=[], metavar="SOURCE=CLASS", help="as in evaluate")
    bb.add_argument("--score", type=float, help="score for the no-box and false-alarm rates (default: the model's)")
    bb.add_argument("--threads", type=int, help="CPU threads for every method")
    bb.add_argument("--json", help="write all figures here")
    bb.add_argument("--markdown", help="write the table here")
    bb.set_defaults(func=cmd_benchmark_boxes)

    bs = b.add_parser("speed", help="latency of a model with and without each inference speed-up, per stage")
    bs.add_argument("--model", default=DEFAULT_MODEL, help="checkpoint file or shipped model name")
    bs.add_argument("--images", nargs="+", default=["samples"], help="image files or folders")
    bs.add_argument("--size", type=int, default=416, help="resize every image to size x size (0: keep)")
    bs.add_argument("--runs", type=int, default=30)
    bs.add_argument("--threads", type=int, help="torch CPU threads")
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
    mn.add_argument("--score", type=float, default=0.3, help="a detection at this score or above is a false alarm")
    mn.add_argument("--out", required=True, help="the txt SPEC file to write")
    mn.add_argument("--threads", type=int, help="torch CPU threads")
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
    dl.add_argument("--workers", type=int, default=8)
    dl.set_defaults(func=cmd_download)
    y = data.add_parser("synth-curved", help="render curved words with exact polygons onto real photos")
    y.add_argument("--backgrounds", nargs="+", required=True, metavar="SPEC", help="their own text stays as '###'")
    y.add_argument("--count", type=int, default=500)
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_dash_paths(sys.argv[1:] if argv is None else argv, parser))
    try:
        args.func(args)
    except UserError as e:
        print(f"regiondet: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("regiondet: interrupted", file=sys.stderr)
        return 130
    except LaunchFailed as e:  # the failing process has printed its own line
        return e.exit_code
    except BrokenPipeError:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
