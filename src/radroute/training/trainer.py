"""The training loop: presets, early stopping, checkpoints + resume, DDP, JSONL log, progress."""
from __future__ import annotations

import copy
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from radroute.errors import InvalidConfigError
from radroute.training.loss import IGNORE, correct_counts, multitask_loss, task_slices
from radroute.training.optim import make_schedule
from radroute.training.runtime import (DistInfo, autocast, init_distributed, pick_device,
                                       resolve_precision, seed_everything)
from radroute.training.sampler import EpochSampler

TRAIN_MODES = ("scratch", "finetune", "head")
LAST_CHECKPOINT = "last.pt"
LOG_NAME = "train_log.jsonl"


@dataclass
class TrainConfig:
    """Everything that shapes a run (stored in the checkpoint and the model package)."""

    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "adam"              # adam (Pham) | sgd (Rajkomar), see radroute.training.optim
    lr: float | None = None              # None: the preset's
    weight_decay: float | None = None    # None: the preset's
    mode: str = "scratch"                # scratch | finetune (all layers) | head (classifier only)
    patience: int | None = 5             # epochs without validation improvement; None/0: off
    seed: int = 0
    workers: int = 0
    precision: str = "auto"              # auto | fp32 | bf16 | fp16 (GPU)
    channels_last: bool = True
    device: str | None = None            # None/auto: the GPU when there is one
    time_budget_min: float | None = None  # stop training after this many minutes
    label_smoothing: float = 0.0
    eval_batch_size: int = 256
    progress: bool = True

    def __post_init__(self) -> None:
        if self.mode not in TRAIN_MODES:
            raise InvalidConfigError(f"trainer mode must be one of {TRAIN_MODES}, got {self.mode!r}")
        if self.epochs < 1 or self.batch_size < 1:
            raise InvalidConfigError("epochs and batch_size must be >= 1")


@dataclass
class TrainResult:
    history: list[dict[str, Any]] = field(default_factory=list)
    best_epoch: int | None = None
    best_score: float | None = None
    stop_reason: str = "epochs"
    train_seconds: float = 0.0


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def classifier_of(model: nn.Module) -> nn.Module:
    """The final layer (timm's ``get_classifier``)."""
    model = unwrap(model)
    if hasattr(model, "get_classifier"):
        return model.get_classifier()
    raise InvalidConfigError(f"{type(model).__name__} has no get_classifier(); cannot train the head only")


class Trainer:
    """Fits ``model`` on a dataset of ``(x, y)`` pairs (``y``: int64 (n_tasks,), -1 = missing).

    The network's output is the concatenation of every task's logits in ``tasks`` order; the loss
    is the sum of the tasks' cross-entropies. Under torchrun (``WORLD_SIZE`` > 1) it runs DDP
    (gloo on CPU, nccl on GPU); only rank 0 logs, shows progress and writes checkpoints.
    """

    def __init__(self, model: nn.Module, tasks: dict[str, Sequence[str]], train_ds: Dataset,
                 val_ds: Dataset | None = None, config: TrainConfig | None = None,
                 out_dir: str | Path | None = None, sample_weights: Sequence[float] | None = None,
                 log_extra: dict[str, Any] | None = None):
        self.config = cfg = config or TrainConfig()
        self.tasks = {t: list(c) for t, c in tasks.items()}
        self.task_sizes = [len(c) for c in self.tasks.values()]
        self.train_ds, self.val_ds = train_ds, val_ds
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.log_extra = log_extra or {}
        self.dist: DistInfo = init_distributed(cfg.device)
        self.device = pick_device(cfg.device, self.dist)
        self.amp_dtype = resolve_precision(cfg.precision, self.device)
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
        seed_everything(cfg.seed)

        self.model = model.to(self.device, memory_format=self.memory_format)
        if cfg.mode == "head":
            head = classifier_of(self.model)
            for p in self.model.parameters():
                p.requires_grad_(False)
            for p in head.parameters():
                p.requires_grad_(True)
        self.net: nn.Module = self.model
        if self.dist.enabled:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

        self.sampler = EpochSampler(len(train_ds), seed=cfg.seed, weights=sample_weights,
                                    rank=self.dist.rank, world_size=self.dist.world_size)
        self.loader = DataLoader(train_ds, batch_size=cfg.batch_size, sampler=self.sampler,
                                 num_workers=cfg.workers, drop_last=len(self.sampler) > cfg.batch_size,
                                 pin_memory=self.device.type == "cuda",
                                 persistent_workers=cfg.workers > 0)
        self.schedule = make_schedule(cfg.optimizer, self.model.parameters(), cfg.epochs,
                                      len(self.loader), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    # ---- helpers ---------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path | None:
        return self.out_dir / "checkpoints" if self.out_dir else None

    def _log(self, record: dict[str, Any]) -> None:
        if self.out_dir is None or not self.dist.is_main:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        record = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), **record}
        with open(self.out_dir / LOG_NAME, "a") as f:
            f.write(json.dumps(record, default=str) + "\n")

    def _set_train_mode(self) -> None:
        if self.config.mode == "head":  # frozen backbone: BN statistics and dropout stay as they are
            self.model.eval()
            classifier_of(self.model).train()
        else:
            self.model.train()

    def _elapsed(self, t0: float) -> float:
        """Seconds since ``t0``, the maximum over ranks (keeps DDP ranks' decisions in step)."""
        elapsed = time.perf_counter() - t0
        if not self.dist.enabled:
            return elapsed
        t = torch.tensor([elapsed], dtype=torch.float64,
                         device=self.device if dist.get_backend() == "nccl" else "cpu")
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    # ---- evaluation --------------------------------------------------------
    @torch.no_grad()
    def predict(self, ds: Dataset, features: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(outputs, labels) for every sample of ``ds`` in order; all ranks share the work.

        ``outputs`` are the logits (N, sum of classes), or with ``features=True`` the penultimate
        features (N, D) from ``forward_head(..., pre_logits=True)``.
        """
        model = self.model
        was_training = model.training
        model.eval()
        indices = list(range(self.dist.rank, len(ds), self.dist.world_size))
        loader = DataLoader(Subset(ds, indices), batch_size=self.config.eval_batch_size,
                            num_workers=self.config.workers)
        outs, ys = [], []
        for x, y in loader:
            x = x.to(self.device, memory_format=self.memory_format)
            with autocast(self.device, self.amp_dtype):
                out = model.forward_head(model.forward_features(x), pre_logits=True) if features else model(x)
            outs.append(out.float().cpu())
            ys.append(y.view(len(y), -1))
        out = torch.cat(outs).numpy() if outs else np.zeros((0, 0), np.float32)
        y = torch.cat(ys).numpy() if ys else np.zeros((0, len(self.task_sizes)), np.int64)
        model.train(was_training)
        if not self.dist.enabled:
            return out, y
        parts: list[Any] = [None] * self.dist.world_size
        dist.all_gather_object(parts, (indices, out, y))
        n = len(ds)
        width = max(p[1].shape[1] for p in parts if len(p[0]))
        all_out = np.zeros((n, width), np.float32)
        all_y = np.zeros((n, len(self.task_sizes)), np.int64)
        for idx, o, yy in parts:
            if len(idx):
                all_out[idx], all_y[idx] = o, yy
        return all_out, all_y

    def validate(self) -> dict[str, float]:
        """Validation loss and accuracy (mean over tasks) plus per-task accuracy."""
        logits, y = self.predict(self.val_ds)
        lt, yt = torch.from_numpy(logits), torch.from_numpy(y)
        out: dict[str, float] = {"val_loss": float(multitask_loss(lt, yt, self.task_sizes))}
        accs = []
        for (task, _), sl, col in zip(self.tasks.items(), task_slices(self.task_sizes), range(len(self.tasks))):
            mask = y[:, col] != IGNORE
            acc = float((logits[mask, sl].argmax(1) == y[mask, col]).mean()) if mask.any() else math.nan
            out[f"val_acc_{task}"] = acc
            accs.append(acc)
        out["val_acc"] = float(np.nanmean(accs)) if not all(math.isnan(a) for a in accs) else math.nan
        return out

    # ---- checkpoints ---------------------------------------------------------
    def _save_checkpoint(self, state: dict[str, Any]) -> None:
        if self.checkpoint_dir is None or not self.dist.is_main:
            return
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_dir / (LAST_CHECKPOINT + ".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_dir / LAST_CHECKPOINT)  # atomic: a crash never leaves half a file

    def _load_checkpoint(self) -> dict[str, Any] | None:
        path = self.checkpoint_dir / LAST_CHECKPOINT if self.checkpoint_dir else None
        if path is None or not path.is_file():
            return None
        return torch.load(path, map_location="cpu", weights_only=False)

    # ---- the loop ----------------------------------------------------------------
    def fit(self, resume: bool = False, until_epoch: int | None = None) -> TrainResult:
        """Train; returns the history. The model ends with the best validation weights.

        ``resume`` continues from ``out_dir/checkpoints/last.pt`` (weights, optimiser, schedule,
        early-stopping state and random number generators), so a resumed run gives the same
        weights as an uninterrupted one. ``until_epoch`` stops this call after that many epochs
        in all (for training in chunks; resume to go on).
        """
        cfg = self.config
        result = TrainResult()
        start_epoch, bad_epochs = 0, 0
        best_state: dict[str, torch.Tensor] | None = None
        best_loss = math.inf
        ckpt = self._load_checkpoint() if resume else None
        if ckpt is not None:
            self.model.load_state_dict(ckpt["model"])
            self.schedule.load_state_dict(ckpt["schedule"])
            self.scaler.load_state_dict(ckpt["scaler"])
            start_epoch, bad_epochs = ckpt["epoch"] + 1, ckpt["bad_epochs"]
            result.history, result.best_epoch, result.best_score = ckpt["history"], ckpt["best_epoch"], ckpt["best_score"]
            best_state, best_loss = ckpt["best_state"], ckpt["best_loss"]
            result.train_seconds = ckpt["train_seconds"]
            _set_rng_state(ckpt["rng"])
            self._log({"event": "resume", "epoch": start_epoch})
        else:
            self._log({"event": "start", "config": asdict(cfg), "world_size": self.dist.world_size,
                       "device": str(self.device), "precision": str(self.amp_dtype or "fp32"),
                       "n_train": len(self.train_ds), "n_val": len(self.val_ds) if self.val_ds else 0,
                       **self.log_extra})
        budget_s = cfg.time_budget_min * 60 if cfg.time_budget_min else math.inf
        t0 = time.perf_counter() - result.train_seconds
        progress = self._progress()
        stop = False
        with progress:
            for epoch in range(start_epoch, min(cfg.epochs, until_epoch or cfg.epochs)):
                stats = self._train_epoch(epoch, progress, t0, budget_s)
                record = {"event": "epoch", "epoch": epoch, **stats}
                if self.val_ds is not None and len(self.val_ds):
                    record.update(self.validate())
                    score, vloss = record["val_acc"], record["val_loss"]
                    improved = result.best_score is None or score > result.best_score + 1e-9 or (
                        abs(score - result.best_score) <= 1e-9 and vloss < best_loss)
                else:
                    improved, score, vloss = True, stats["train_acc"], stats["train_loss"]
                if improved:
                    result.best_epoch, result.best_score, best_loss, bad_epochs = epoch, score, vloss, 0
                    best_state = copy.deepcopy({k: v.detach().cpu() for k, v in self.model.state_dict().items()})
                else:
                    bad_epochs += 1
                result.train_seconds = time.perf_counter() - t0
                record.update(best_epoch=result.best_epoch, elapsed_s=round(result.train_seconds, 2))
                result.history.append(record)
                self._log(record)
                if self.dist.is_main and cfg.progress:
                    progress.console.print(_epoch_line(record))
                if stats["stopped_early"]:
                    result.stop_reason, stop = "time_budget", True
                elif cfg.patience and bad_epochs >= cfg.patience:
                    result.stop_reason, stop = "early_stopping", True
                self._save_checkpoint({
                    "model": self.model.state_dict(), "schedule": self.schedule.state_dict(),
                    "scaler": self.scaler.state_dict(), "epoch": epoch, "bad_epochs": bad_epochs,
                    "history": result.history, "best_epoch": result.best_epoch,
                    "best_score": result.best_score, "best_state": best_state, "best_loss": best_loss,
                    "train_seconds": result.train_seconds, "config": asdict(cfg), "rng": _rng_state()})
                if stop:
                    break
        if until_epoch is not None and until_epoch < cfg.epochs and not stop:
            result.stop_reason = "until_epoch"
        if best_state is not None:
            self.model.load_state_dict(best_state)
        self._log({"event": "end", "stop_reason": result.stop_reason, "best_epoch": result.best_epoch,
                   "best_score": result.best_score, "train_seconds": round(result.train_seconds, 2)})
        return result

    def _train_epoch(self, epoch: int, progress, t0: float, budget_s: float) -> dict[str, Any]:
        self.sampler.set_epoch(epoch)
        self._set_train_mode()
        task = progress.add_task(f"epoch {epoch + 1}/{self.config.epochs}", total=len(self.loader),
                                 loss=math.nan, acc=math.nan)
        loss_sum, n_batches, correct, labelled = 0.0, 0, 0, 0
        stopped = False
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True, memory_format=self.memory_format)
            y = y.to(self.device, non_blocking=True)
            with autocast(self.device, self.amp_dtype):
                logits = self.net(x)
            loss = multitask_loss(logits, y, self.task_sizes, self.config.label_smoothing)
            self.schedule.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.schedule.optimizer)
            self.scaler.update()
            elapsed = self._elapsed(t0)
            self.schedule.step(self.config.epochs * elapsed / budget_s if budget_s < math.inf else None)
            loss_sum += float(loss.detach())
            n_batches += 1
            c, n = correct_counts(logits.detach(), y, self.task_sizes)
            correct, labelled = correct + c, labelled + n
            progress.update(task, advance=1, loss=loss_sum / n_batches, acc=correct / max(labelled, 1))
            if elapsed > budget_s:
                stopped = True
                break
        progress.remove_task(task)
        return {"train_loss": loss_sum / max(n_batches, 1), "train_acc": correct / max(labelled, 1),
                "lr": self.schedule.lr, "steps": n_batches, "stopped_early": stopped}

    def _progress(self):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.3f} acc {task.fields[acc]:.3f}"),
                        TimeElapsedColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=True,
                        disable=not (self.config.progress and self.dist.is_main))


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _epoch_line(r: dict[str, Any]) -> str:
    parts = [f"epoch {r['epoch'] + 1}", f"loss {r['train_loss']:.4f}", f"acc {r['train_acc']:.4f}"]
    if "val_acc" in r:
        parts += [f"val_loss {r['val_loss']:.4f}", f"val_acc {r['val_acc']:.4f}"]
    parts.append(f"{r['elapsed_s']:.0f}s")
    return "  ".join(parts)
