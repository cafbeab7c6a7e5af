"""The training loop: plain PyTorch, seeded, resumable, single process or torchrun."""

from __future__ import annotations

import math
import os
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

from regiondet.config import VAL_FIGURES, Config, apply_overrides, config_from_dict
from regiondet.data.dataset import DetectionDataset, SeededItems, collate, load_labelled, load_negatives
from regiondet.data.paste import PasteBank
from regiondet.data.sample import Sample
from regiondet.data.text_dataset import TextDataset
from regiondet.data.transforms import train_augment
from regiondet.engine.distributed import DistInfo, all_mean, any_rank, barrier, init_distributed, shutdown
from regiondet.engine.history import write_history
from regiondet.engine.launch import LAUNCH_ENV
from regiondet.engine.probes import TrainProbes
from regiondet.engine.run_lock import RunLock, live_owner
from regiondet.errors import Stopped, UserError
from regiondet.evaluation.scoring import evaluate_model
from regiondet.inference.predictor import Detector
from regiondet.io import atomic_write_text
from regiondet.models.backbones import trunk_rules
from regiondet.models.checkpoint import config_of, load_matching, load_model_state, read_checkpoint, save_checkpoint
from regiondet.models.faster_rcnn import build_model
from regiondet.models.zoo import resolve_model_path


def load_sets(cfg: Config) -> tuple[list[Sample], list[Sample], list[Sample]]:
    """(train, val, val_negatives) samples with labels mapped to the model's classes."""
    if not cfg.data.train:
        raise UserError("data.train lists no dataset SPEC")
    train = load_labelled(cfg.data.train, cfg.model.classes, cfg.data.class_map) + load_negatives(cfg.data.negatives)
    val = load_labelled(cfg.data.val, cfg.model.classes, cfg.data.class_map)
    return train, val, load_negatives(cfg.data.val_negatives)


def resume_config(cfg: Config, overrides: list[str]) -> Config:
    """The config a run was started with (from its last.pt), plus command-line overrides.

    So `--resume --set train.epochs=20` extends a finished run, while edits to the YAML
    file after the start cannot silently change a run halfway.
    """
    last = Path(cfg.train.out) / "last.pt"
    if not last.is_file() and (pid := live_owner(last.parent)):
        raise UserError(
            f"a run is live in this folder (pid {pid}) and has saved no checkpoint yet: wait for it or stop it",
            last.parent,
        )
    return config_from_dict(apply_overrides(read_checkpoint(last)["config"], overrides), str(last))


def resume_command(out: Path, info: DistInfo) -> str:
    """The command that continues a stopped run, launched the way this one was (torchrun with
    its process and node counts when it ran under torchrun)."""
    base = f"regiondet train {out / 'config.yaml'} --resume"
    env = os.environ
    if env.get(LAUNCH_ENV):  # started by regiondet train --nproc: resume the same way
        return env[LAUNCH_ENV]
    if not info.enabled:
        return base
    launch = f"torchrun --nproc_per_node={env.get('LOCAL_WORLD_SIZE', info.world)}"
    nodes = int(env.get("GROUP_WORLD_SIZE", "1") or 1)
    if nodes > 1:
        launch += f" --nnodes={nodes} --rdzv_endpoint={env.get('MASTER_ADDR', 'HOST')}:{env.get('MASTER_PORT', 'PORT')}"
    return launch + " -m regiondet.cli" + base.removeprefix("regiondet")


def _ignore_sigint(_: int) -> None:
    """DataLoader workers leave Ctrl-C to the main process, which saves before stopping."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _numpy_state() -> dict:
    """NumPy's global random state as tensors and numbers (checkpoints load with weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "gauss": float(gauss),
    }


def _set_numpy_state(state: dict) -> None:
    keys = state["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, state["pos"], state["has_gauss"], state["gauss"]))


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
        self.signum = int(signal.SIGINT)
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}

    def _handle(self, signum, frame) -> None:
        if self.set:  # second Ctrl-C: stop now
            raise Stopped(signum)
        self.set, self.signum = True, signum

    def restore(self) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)


def validate(
    model: torch.nn.Module, cfg: Config, val: list[Sample], val_neg: list[Sample], out_dir: Path | None = None
) -> dict:
    """Box task: VOC/COCO figures (PR curve in out_dir); text task: ICDAR 2015 P/R/H-mean."""
    detector = Detector(model, cfg, score=cfg.train.eval_score)
    plot = out_dir / "pr_curve.png" if out_dir else None
    result = evaluate_model(detector, val, val_neg, plot_path=plot, progress=False)
    model.train()
    return result


def selected(res: dict, cfg: Config) -> float | None:
    """The validation figure train.select names (default: the task's first VAL_FIGURES figure);
    None when it cannot be measured (a class without validation objects), so no epoch wins on it."""
    key = cfg.train.select or next(iter(VAL_FIGURES[cfg.model.task]))
    if key.startswith("ap50:"):
        by_name = {c.lower(): ap for c, ap in res.get("ap50_per_class", {}).items()}
        value = by_name.get(key[5:].lower())
    else:
        value = res.get(key)
    return None if value is None or math.isnan(value) else float(value)


def train(cfg: Config, resume: bool = False, progress: bool = True) -> Path:
    """Train per cfg; returns the run folder (config.yaml, metrics.csv, curves.png, last.pt, best.pt)."""
    info = init_distributed()
    try:
        if not info.main:  # rank 0 holds the folder's lock for the whole job
            return Trainer(cfg, resume, progress, info).run()
        with RunLock(Path(cfg.train.out)):
            return Trainer(cfg, resume, progress, info).run()
    finally:
        shutdown(info)


class Trainer:
    """One run: the model, optimiser, schedule and the position in the data, all resumable."""

    def __init__(self, cfg: Config, resume: bool, progress: bool, info: DistInfo):
        self.cfg, self.info, self.progress = cfg, info, progress
        self.out = Path(cfg.train.out)
        self.last = self.out / "last.pt"
        state = None
        if resume:
            if not self.last.is_file():
                raise UserError("nothing to resume: no last.pt", self.out)
            state = read_checkpoint(self.last)
        elif self.last.is_file():
            raise UserError("holds a run already: pass --resume to continue it, or set train.out", self.out)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        _seed_everything(cfg.train.seed + info.rank)
        init = None if state is not None or not cfg.train.init else self._read_init(cfg.train.init)
        train_set, self.val, self.val_neg = load_sets(cfg)
        self.model = build_model(cfg.model, load_weights=state is None).to(info.device)
        if state is not None:
            load_model_state(self.model, state["model"], self.last)
        elif init is not None:
            self._init_from(*init)
        if info.main:
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        self.probes = TrainProbes(self.model)
        self.net = DistributedDataParallel(self.model) if info.enabled else self.model
        self.optimizer = _optimizer(cfg, self.model)
        if cfg.model.task == "text":
            crop, scales = cfg.train.crop, tuple(cfg.train.scale_range)
            self.dataset = TextDataset(train_set, cfg.model.max_pairs, crop, scales, cfg.train.rotate)
        else:
            t = cfg.train
            augment = train_augment(
                t.hflip, t.vflip, t.rot90, t.photometric, t.zoom_out, t.box_crop, t.negative_crop, t.degrade
            )
            bank = PasteBank(train_set, tuple(t.paste_sizes)) if t.paste > 0 else None
            if bank is not None and not len(bank):
                raise UserError("train.paste is set but data.train has no box to paste")
            self.dataset = DetectionDataset(train_set, cfg.model.classes, augment, bank, t.paste)
        self.sampler = DistributedSampler(self.dataset, info.world, info.rank, shuffle=True, seed=cfg.train.seed)
        self.per_epoch = cfg.train.steps_per_epoch or math.ceil(len(self.sampler) / cfg.train.batch_size)
        total = self.per_epoch * cfg.train.epochs
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: _lr_factor(s, total, cfg))
        self.epoch, self.step, self.rows, self.best = 0, 0, [], -math.inf
        self.acc: dict[str, float] = defaultdict(float)
        if state is not None:
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.epoch, self.step = state["epoch"], state["step_in_epoch"]
            self.rows, self.best = state["history"], state["best"]
            self.acc.update(state.get("partial", {}))
            self.probes.load(state.get("probes", {}))
            torch.set_rng_state(state["torch_rng"])
            if "numpy_rng" in state:
                _set_numpy_state(state["numpy_rng"])
                random.setstate(state["python_rng"])

    def _read_init(self, name: str) -> tuple[Path, dict]:
        """train.init's checkpoint, read before the data: a trunk made under other padding rules
        than this config's would be fine-tuned from features that no longer mean anything."""
        path = resolve_model_path(name)
        ckpt = read_checkpoint(path)
        theirs, ours = trunk_rules(config_of(ckpt, path).model), trunk_rules(self.cfg.model)
        if theirs != ours:
            reason = f"train.init was trained with {theirs}; this config builds {ours}: set model.weights as it was"
            raise UserError(reason, path)
        return path, ckpt

    def _init_from(self, path: Path, ckpt: dict) -> None:
        loaded, skipped = load_matching(self.model, ckpt["model"], path)
        if self.info.main:
            more = f"; new: {', '.join(skipped[:4])}{' ...' if len(skipped) > 4 else ''}" if skipped else ""
            print(f"regiondet: init from {path}: {loaded} tensors{more}", file=sys.stderr)

    def checkpoint(self) -> None:
        """last.pt: everything needed to continue from the current step (rank 0 writes)."""
        if self.info.main:
            save_checkpoint(
                self.last,
                self.model,
                self.cfg,
                optimizer=self.optimizer.state_dict(),
                scheduler=self.scheduler.state_dict(),
                epoch=self.epoch,
                step_in_epoch=self.step,
                history=self.rows,
                best=self.best,
                torch_rng=torch.get_rng_state(),
                numpy_rng=_numpy_state(),
                python_rng=random.getstate(),
                partial=dict(self.acc),
                probes=self.probes.state(),
            )

    def run(self) -> Path:
        stop = _StopFlag()
        try:
            while self.epoch < self.cfg.train.epochs and not stop.set:
                self.train_epoch(stop)
                if not stop.set:
                    self.end_epoch()
        except UserError:
            self.checkpoint()  # e.g. a corrupt image: fix it, then --resume from this step
            raise
        finally:
            stop.restore()
        if stop.set:
            if self.info.main:
                print(f"regiondet: saved; resume with: {resume_command(self.out, self.info)}", file=sys.stderr)
            raise Stopped(stop.signum)
        return self.out

    def _loader(self) -> DataLoader:
        """This epoch's batches from the current step on: the order, and each item's
        augmentation seed, depend only on the seed, the epoch and the position in it."""
        bs = self.cfg.train.batch_size
        self.sampler.set_epoch(self.epoch)
        order = list(self.sampler)
        order = (order * math.ceil(self.per_epoch * bs / max(1, len(order))))[: self.per_epoch * bs]
        seeds = np.random.SeedSequence([self.cfg.train.seed, self.info.rank, self.epoch]).generate_state(len(order))
        items = [(i, int(s)) for i, s in zip(order, seeds, strict=True)]
        return DataLoader(
            SeededItems(self.dataset),
            bs,
            sampler=items[self.step * bs :],
            collate_fn=collate,
            num_workers=self.cfg.train.workers,
            worker_init_fn=_ignore_sigint,
            generator=torch.Generator().manual_seed(self.cfg.train.seed + self.epoch),  # not the global RNG
        )

    def train_epoch(self, stop: _StopFlag) -> None:
        started = time.time() - self.acc.get("seconds", 0.0)
        last_save = time.time()
        desc = f"epoch {self.epoch + 1}/{self.cfg.train.epochs}"
        bar = tqdm(
            self._loader(),
            total=self.per_epoch,
            initial=self.step,
            desc=desc,
            disable=not (self.progress and self.info.main),
            dynamic_ncols=True,
        )
        self.net.train()
        for images, targets in bar:
            images = [i.to(self.info.device) for i in images]
            targets = [{k: v.to(self.info.device) for k, v in t.items()} for t in targets]
            losses = self.net(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise UserError(f"loss became {loss.item()} at epoch {self.epoch + 1}; lower train.lr")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.cfg.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
            self.optimizer.step()
            self.scheduler.step()
            self.step += 1
            for k, v in losses.items():
                self.acc[k] += v.item()
            self.acc["loss_total"] += loss.item()
            self.acc["n"] += 1
            self.acc["seconds"] = time.time() - started
            bar.set_postfix(loss=f"{self.acc['loss_total'] / self.acc['n']:.3f}")
            stopping, save_due = any_rank([stop.set, time.time() - last_save > 600], self.info)
            stop.set = stop.set or stopping
            if stopping or save_due:
                self.checkpoint()
                last_save = time.time()
            if stopping:
                break
        bar.close()

    def end_epoch(self) -> None:
        """Log the epoch's means, validate, keep the best model, checkpoint."""
        cfg, n = self.cfg, max(self.acc["n"], 1)
        row = {
            "epoch": self.epoch + 1,
            "steps": (self.epoch + 1) * self.per_epoch,
            "lr": self.scheduler.get_last_lr()[0],
            "seconds": self.acc["seconds"],
        }
        row.update({k: v / n for k, v in self.acc.items() if k.startswith("loss_")})
        row.update(all_mean(self.probes.summary(), self.info))
        due = (self.epoch + 1) % cfg.train.eval_every == 0 or self.epoch + 1 == cfg.train.epochs
        score = None
        if self.info.main and self.val and due:
            res = validate(self.model, cfg, self.val, self.val_neg, self.out)
            for k in VAL_FIGURES[cfg.model.task]:
                row[f"val_{k}"] = res[k]
            if len(cfg.model.classes) > 1 and "ap50_per_class" in res:
                row.update({f"val_ap50_{c}": ap for c, ap in res["ap50_per_class"].items()})
            score = selected(res, cfg)
        elif not self.val:
            score = -row["loss_total"]
        self.rows.append(row)
        self.epoch, self.step, self.acc = self.epoch + 1, 0, defaultdict(float)
        if self.info.main:
            write_history(self.rows, self.out)
            if score is not None and score > self.best:
                self.best = score
                save_checkpoint(self.out / "best.pt", self.model, cfg, epoch=self.epoch, metrics=row)
            self.checkpoint()
            print(_summary_line(row), file=sys.stderr)
        barrier(self.info)


def _summary_line(row: dict) -> str:
    parts = [
        f"epoch {row['epoch']}",
        f"loss {row['loss_total']:.3f}",
        f"acc {row['head_accuracy']:.3f}",
        f"{row['seconds']:.0f}s",
    ]
    if row.get("val_map50") is not None:
        classes = [f"{k[9:]} {v:.3f}" for k, v in row.items() if k.startswith("val_ap50_") and not math.isnan(v)]
        parts.append(f"val mAP50 {row['val_map50']:.3f}" + (f" ({', '.join(classes)})" if classes else ""))
    if row.get("val_hmean") is not None:
        parts.append(f"val H-mean {row['val_hmean']:.3f} (P {row['val_precision']:.3f} R {row['val_recall']:.3f})")
    return "regiondet: " + ", ".join(parts)
