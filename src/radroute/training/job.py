"""``radroute.training.run(TrainJob)``: a labelled dataset in, a saved model package out.

What ``radroute train`` and ``scripts/train_bundled.py`` do: read the dataset, assign or reuse
its splits, decode it once into the preprocessing cache, build the datasets (augmentation,
class balance, a seeded training subset) and call :func:`~radroute.training.fit_package` or
:func:`~radroute.training.fit_features_package`. Under torchrun, rank 0 writes the split file
and the cache while the other ranks wait, then read them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from radroute.data import DataSource, Manifest, Preprocessing, ensure_splits
from radroute.errors import InvalidConfigError, ModelNotFoundError
from radroute.models import ModelPackage
from radroute.training.abstention import DEFAULT_TARGET
from radroute.training.api import FEATURE_MODES, MODES, fit_features_package, fit_package
from radroute.training.package_metrics import AbstainTarget
from radroute.training.runtime import DistInfo, init_distributed
from radroute.training.trainer import TrainConfig


@dataclass(kw_only=True)
class TrainJob(DataSource):
    """Everything one training run takes; the fields are ``radroute train``'s options.

    The dataset is ``data`` read with the :class:`~radroute.data.DataSource` options, or an
    in-memory :class:`~radroute.data.Manifest`. ``out`` receives the package, ``splits.csv``,
    ``train_log.jsonl`` and ``checkpoints/``.
    """

    out: Path
    arch: str = "menkovski2015"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    mode: str = "scratch"                 # see radroute.training.MODES
    backbone: str | None = None           # package (path / bundled name) or architecture
    pretrained_path: Path | None = None
    splits: Path | None = None            # split file to reuse (default: out/splits.csv)
    train_split: str = "train"
    val_split: str = "val"
    size: int | None = None               # None: the architecture's / the backbone package's
    window: str = "auto"
    keep_aspect: bool = True
    optimizer: str = "adam"
    epochs: int = 30
    batch_size: int = 64
    lr: float | None = None
    weight_decay: float | None = None
    augment: str = "none"                 # radroute.data.augment preset
    extra_augment: Callable | None = None  # applied after the preset (training images only)
    balance: bool | str = False           # True: the first task's classes equally often; or a task name
    patience: int = 5                     # 0: no early stopping
    select_on_val: bool = True            # False: keep the last epoch, validation only measures
    seed: int = 0
    workers: int = 0                      # DataLoader worker processes
    cache_workers: int | None = None      # decoding processes of the cache (None: build_cache's default)
    threads: int | None = None            # torch CPU threads
    max_train_samples: int | None = None
    time_budget: float | None = None      # minutes
    precision: str = "auto"
    device: str | None = None
    channels_last: bool = True
    label_smoothing: float = 0.0
    svm_c: float = 1.0
    abstain_target: AbstainTarget = DEFAULT_TARGET
    cache_dir: Path | None = None
    name: str | None = None               # package name (default: the out folder's name)
    resume: bool = False
    progress: bool = True
    command: str | None = None            # recorded in the package (default: sys.argv)
    body_part_map: dict[str, dict[str, str]] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)  # stored in the package's training record

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.mode not in MODES:
            raise InvalidConfigError(f"--mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.features_mode and self.backbone is None:
            raise InvalidConfigError("features modes need --backbone (a package, or an architecture "
                                     "with local pretrained weights)")

    @property
    def features_mode(self) -> bool:
        return self.mode in FEATURE_MODES


def run(job: TrainJob) -> ModelPackage:
    """Train as ``job`` says and return the package written to ``job.out`` (on every rank;
    only rank 0 writes). Raises :class:`~radroute.errors.RadrouteError` for bad data or options."""
    import torch

    if job.threads:
        torch.set_num_threads(job.threads)
    rank = init_distributed(job.device)
    manifest = job.load()
    job.out.mkdir(parents=True, exist_ok=True)
    split_file = job.splits or job.out / "splits.csv"
    manifest = _with_splits(manifest, job, split_file, rank)
    backbone_pkg = _backbone_package(job.backbone)
    pre = _preprocessing(job, backbone_pkg)
    cache = _cache(manifest, pre, job, rank)
    train_idx, val_idx = _split_indices(cache, job)
    train_ds = cache.dataset(indices=train_idx, augment=augmentation(job, pre.size))
    val_ds = cache.dataset(indices=val_idx) if len(val_idx) else None
    data_info = {"source": job.source_name, "reader": manifest.origin.get("reader"),
                 "train_split": job.train_split, "val_split": job.val_split, "split_file": str(split_file),
                 "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
                 "max_train_samples": job.max_train_samples, "augment": job.augment, "balance": job.balance,
                 "unreadable": len(cache.errors), "description": manifest.describe()}
    common = dict(name=job.name, pretrained_path=job.pretrained_path, data=data_info,
                  abstain_target=job.abstain_target, command=job.command,
                  body_part_map=job.body_part_map, training_info=job.training)
    if job.features_mode:
        return fit_features_package(job.backbone, manifest.tasks, train_ds, val_ds, pre, job.out,
                                    mode=job.mode, config=train_config(job), C=job.svm_c, **common)
    return fit_package(job.arch, manifest.tasks, train_ds, val_ds, pre, job.out, train_config(job),
                       arch_kwargs=job.arch_kwargs, backbone=job.backbone,
                       sample_weights=_balance_weights(manifest, train_idx, job.balance),
                       resume=job.resume, select_on_val=job.select_on_val, **common)


def train_config(job: TrainJob) -> TrainConfig:
    """The training loop's settings of ``job``."""
    return TrainConfig(epochs=job.epochs, batch_size=job.batch_size, optimizer=job.optimizer, lr=job.lr,
                       weight_decay=job.weight_decay, mode="scratch" if job.features_mode else job.mode,
                       patience=job.patience or None, seed=job.seed, workers=job.workers,
                       precision=job.precision, channels_last=job.channels_last, device=job.device,
                       time_budget_min=job.time_budget, label_smoothing=job.label_smoothing,
                       progress=job.progress)


def augmentation(job: TrainJob, size: int) -> Callable | None:
    """The training images' transform: the preset, then ``extra_augment`` (none in features modes)."""
    from torchvision.transforms import v2

    from radroute.data.augment import build_augmentation

    if job.features_mode:
        return None
    preset = None if job.augment == "none" else build_augmentation(job.augment, size)
    if job.extra_augment is None or preset is None:
        return preset if job.extra_augment is None else job.extra_augment
    return v2.Compose([preset, job.extra_augment])


def _barrier(rank: DistInfo) -> None:
    if rank.enabled:
        import torch.distributed as dist

        dist.barrier()


def _with_splits(manifest: Manifest, job: TrainJob, split_file: Path, rank: DistInfo) -> Manifest:
    """Rank 0 assigns or reads the splits and writes ``out/splits.csv``; the others then read it."""
    from radroute.data.splits import write_splits

    own_file = job.out / "splits.csv"
    if rank.is_main:
        manifest = ensure_splits(manifest, split_file, seed=job.seed, stratify_task=next(iter(manifest.tasks)))
        if split_file != own_file:
            write_splits(manifest, own_file)
    _barrier(rank)
    return manifest if rank.is_main else ensure_splits(manifest, own_file)


def _cache(manifest: Manifest, pre: Preprocessing, job: TrainJob, rank: DistInfo):
    """The preprocessing cache; rank 0 builds it, the others reuse it."""
    from radroute.data.cache import build_cache

    cache = None
    if rank.is_main:
        cache = build_cache(manifest, pre, job.cache_dir, workers=job.cache_workers, progress=job.progress)
    _barrier(rank)
    if cache is None:
        cache = build_cache(manifest, pre, job.cache_dir, workers=job.cache_workers, progress=False)
    return cache


def _split_indices(cache, job: TrainJob) -> tuple[np.ndarray, np.ndarray]:
    """Readable samples of the training split (a seeded subset of ``max_train_samples``) and of
    the validation split."""
    train_idx = cache.indices(job.train_split)
    if len(train_idx) == 0:
        raise InvalidConfigError(f"no readable samples in split {job.train_split!r} (--train-split)")
    if job.max_train_samples and len(train_idx) > job.max_train_samples:
        train_idx = np.sort(np.random.default_rng(job.seed).permutation(train_idx)[:job.max_train_samples])
    return train_idx, cache.indices(job.val_split)


def _balance_weights(manifest: Manifest, train_idx: np.ndarray, balance: bool | str) -> np.ndarray | None:
    """Per-sample weights that draw the classes of the balanced task equally often."""
    from radroute.data.dataset import class_weights

    if not balance:
        return None
    tasks = list(manifest.tasks)
    task = tasks[0] if balance is True else balance
    if task not in tasks:
        raise InvalidConfigError(f"cannot balance task {task!r}: the data's tasks are {', '.join(tasks)}")
    return class_weights(manifest.label_matrix()[train_idx, tasks.index(task)])


def _backbone_package(backbone: str | None) -> ModelPackage | None:
    if backbone is None:
        return None
    try:
        return ModelPackage.load(backbone)
    except ModelNotFoundError:
        return None


def _preprocessing(job: TrainJob, backbone_pkg: ModelPackage | None) -> Preprocessing:
    """The job's input recipe; a backbone package's size and intensity scaling by default."""
    from radroute.models import get_default_cfg, is_model

    if job.size:
        size = job.size
    elif backbone_pkg is not None:
        size = int(backbone_pkg.preprocessing.get("size", 224))
    else:
        size = int(get_default_cfg(job.arch).get("input_size", 224)) if is_model(job.arch) else 224
    kw: dict[str, Any] = {"size": size, "window": job.window, "keep_aspect": job.keep_aspect}
    if backbone_pkg is not None:  # features and fine-tuning expect the backbone's intensity scaling
        kw.update(mean=backbone_pkg.preprocessing.get("mean", 0.5), std=backbone_pkg.preprocessing.get("std", 0.25))
    return Preprocessing(**kw)
