"""The training loop: plain PyTorch, seeded, resumable, single process or torchrun."""

from __future__ import annotations

import math
import random
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from regiondet.config import Config, apply_overrides, config_from_dict
from regiondet.data.dataset import ClassMapper, DetectionDataset, as_negative, collate
from regiondet.data.sample import Sample
from regiondet.data.spec import load_spec
from regiondet.data.transforms import train_augment
from regiondet.engine.checkpoint import load_model_state, read_checkpoint, save_checkpoint
from regiondet.engine.distributed import DistInfo, all_mean, barrier, init_distributed, shutdown
from regiondet.engine.history import write_history
from regiondet.engine.probes import TrainProbes
from regiondet.errors import UserError
from regiondet.evaluation.detection import evaluate
from regiondet.inference.predictor import Detector
from regiondet.io import atomic_write_text
from regiondet.models.faster_rcnn import build_model

LOSS_KEYS = ["loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"]


def load_sets(cfg: Config) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(train, val, val_negatives) samples with labels mapped to the model's classes."""
    mapper = ClassMapper(cfg.model.classes, cfg.data.class_map)
    if not cfg.data.train:
        raise UserError("data.train lists no dataset SPEC")
    train = [s for spec in cfg.data.train for s in mapper.apply_all(load_spec(spec))]
    train += [as_negative(s) for spec in cfg.data.negatives for s in load_spec(spec)]
    val = [s for spec in cfg.data.val for s in mapper.apply_all(load_spec(spec))]
    val_neg = [as_negative(s) for spec in cfg.data.val_negatives for s in load_spec(spec)]
    return train, val, val_neg


def resume_config(cfg: Config, overrides: list[str]) -> Config:
    """The config a run was started with (from its last.pt), plus command-line overrides.

    So `--resume --set train.epochs=20` extends a finished run, while edits to the YAML
    file after the start cannot silently change a run halfway.
    """
    last = Path(cfg.train.out) / "last.pt"
    return config_from_dict(apply_overrides(read_checkpoint(last)["config"], overrides), str(last))


def _ignore_sigint(_: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process, which saves before stopping."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    t = cfg.train
    if t.optimizer == "adam":
        return torch.optim.Adam(params, lr=t.lr, weight_decay=t.weight_decay)
    return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)


def _lr_factor(step: int, total: int, cfg: Config) -> float:
    warm = cfg.train.warmup_steps
    if step < warm:
        return 0.001 + (1 - 0.001) * step / warm
    if cfg.train.schedule == "cosine":
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0


class _StopFlag:
    """SIGINT / SIGTERM ask the loop to stop at the next step boundary and save."""

    def __init__(self) -> None:
        self.set = False
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame) -> None:
        if self.set:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.set = True

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def validate(
    model: torch.nn.Module, cfg: Config, val: list[Sample], val_neg: list[Sample], out_dir: Path | None = None
) -> dict:
    detector = Detector(model, cfg, score=cfg.train.eval_score)
    plot = out_dir / "pr_curve.png" if out_dir else None
    result = evaluate(detector, val, val_neg or None, plot_path=plot, progress=False)
    model.train()
    return result


def train(cfg: Config, resume: bool = False, progress: bool = True) -> Path:
    """Train per cfg; returns the run folder (config.yaml, metrics.csv, curves.png, last.pt, best.pt)."""
    info = init_distributed()
    try:
        return _train(cfg, resume, progress, info)
    finally:
        shutdown(info)


def _train(cfg: Config, resume: bool, progress: bool, info: DistInfo) -> Path:
    out = Path(cfg.train.out)
    last = out / "last.pt"
    state = None
    if resume:
        if not last.is_file():
            raise UserError("nothing to resume: no last.pt", out)
        state = read_checkpoint(last)
    elif last.is_file():
        raise UserError("holds a run already: pass --resume to continue it, or set train.out", out)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    _seed_everything(cfg.train.seed + info.rank)
    train_set, val, val_neg = load_sets(cfg)
    model = build_model(cfg.model, load_weights=state is None).to(info.device)
    if state is not None:
        load_model_state(model, state["model"], last)
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    probes = TrainProbes(model)
    net = DistributedDataParallel(model) if info.enabled else model
    optimizer = _optimizer(cfg, model)
    augment = train_augment(cfg.train.hflip, cfg.train.vflip, cfg.train.rot90)
    dataset = DetectionDataset(train_set, cfg.model.classes, augment)
    sampler = DistributedSampler(dataset, info.world, info.rank, shuffle=True, seed=cfg.train.seed)
    bs = cfg.train.batch_size
    per_epoch = cfg.train.steps_per_epoch or math.ceil(len(sampler) / bs)
    total = per_epoch * cfg.train.epochs
    epoch, step_in_epoch, rows, best = 0, 0, [], -1.0
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        epoch, step_in_epoch, rows, best = state["epoch"], state["step_in_epoch"], state["history"], state["best"]
        torch.set_rng_state(state["torch_rng"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, total, cfg))
    if state is not None:
        scheduler.load_state_dict(state["scheduler"])
    stop = _StopFlag()
    acc: dict[str, float] = defaultdict(float)
    if state is not None:
        acc.update(state.get("partial", {}))

    def checkpoint(ep: int, step: int) -> None:
        if info.main:
            save_checkpoint(
                last,
                model,
                cfg,
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict(),
                epoch=ep,
                step_in_epoch=step,
                history=rows,
                best=best,
                torch_rng=torch.get_rng_state(),
                partial=dict(acc),
            )

    try:
        net.train()
        while epoch < cfg.train.epochs:
            sampler.set_epoch(epoch)
            order = list(sampler)
            order = (order * math.ceil(per_epoch * bs / max(1, len(order))))[: per_epoch * bs]
            loader = DataLoader(
                dataset,
                bs,
                sampler=order[step_in_epoch * bs :],
                collate_fn=collate,
                num_workers=cfg.train.workers,
                worker_init_fn=_ignore_sigint,
                persistent_workers=False,
            )
            t0 = time.time() - acc.get("seconds", 0.0)
            last_save = time.time()
            bar = tqdm(
                loader,
                total=per_epoch,
                initial=step_in_epoch,
                desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
                disable=not (progress and info.main),
                dynamic_ncols=True,
            )
            for images, targets in bar:
                images = [i.to(info.device) for i in images]
                targets = [{k: v.to(info.device) for k, v in t.items()} for t in targets]
                losses = net(images, targets)
                loss = sum(losses.values())
                if not torch.isfinite(loss):
                    raise UserError(f"loss became {loss.item()} at epoch {epoch + 1}; lower train.lr")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.train.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
                optimizer.step()
                scheduler.step()
                step_in_epoch += 1
                for k in LOSS_KEYS:
                    acc[k] += losses[k].item()
                acc["loss_total"] += loss.item()
                acc["n"] += 1
                bar.set_postfix(loss=f"{acc['loss_total'] / acc['n']:.3f}")
                if stop.set or time.time() - last_save > 600:
                    acc["seconds"] = time.time() - t0
                    checkpoint(epoch, step_in_epoch)
                    last_save = time.time()
                if stop.set:
                    break
            if stop.set:
                break
            bar.close()
            row = {"epoch": epoch + 1, "steps": (epoch + 1) * per_epoch, "lr": scheduler.get_last_lr()[0]}
            n = max(acc["n"], 1)
            row.update({k: acc[k] / n for k in [*LOSS_KEYS, "loss_total"]})
            row.update(all_mean(probes.summary(), info))
            row["seconds"] = time.time() - t0
            if info.main and val and ((epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs):
                res = validate(model, cfg, val, val_neg, out)
                row.update(
                    {
                        f"val_{k}": res[k]
                        for k in ("map50", "coco_ap", "no_detection_rate", "negatives_with_detection_rate")
                    }
                )
                score = res["map50"]
            else:
                score = -row["loss_total"] if not val else None
            rows.append(row)
            epoch, step_in_epoch, acc = epoch + 1, 0, defaultdict(float)
            if info.main:
                write_history(rows, out)
                if score is not None and score > best:
                    best = score
                    save_checkpoint(out / "best.pt", model, cfg, epoch=epoch, metrics=row)
                checkpoint(epoch, 0)
                print(_summary_line(row), file=sys.stderr)
            barrier(info)
    finally:
        stop.restore()
    if stop.set:
        if info.main:
            print(f"regiondet: saved; resume with: regiondet train {out / 'config.yaml'} --resume", file=sys.stderr)
        raise KeyboardInterrupt
    return out


def _summary_line(row: dict) -> str:
    parts = [
        f"epoch {row['epoch']}",
        f"loss {row['loss_total']:.3f}",
        f"acc {row['head_accuracy']:.3f}",
        f"{row['seconds']:.0f}s",
    ]
    if row.get("val_map50") is not None:
        parts.append(f"val mAP50 {row['val_map50']:.3f}")
    return "regiondet: " + ", ".join(parts)
