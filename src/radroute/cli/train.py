"""``radroute train``: fit a classifier on labelled images and write a model package.

Multi-GPU / multi-node: ``torchrun --nproc_per_node N $(which radroute) train ...`` (DDP).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from radroute.cli._common import command_line


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise typer.BadParameter(f"expected TASK=COLUMN, got {item!r}", param_hint=option)
        out[key.strip()] = value.strip()
    return out


def load_training_manifest(data: str, *, dicom_labels: Path | None, label_column: list[str] | None,
                           path_column: str | None, patient_column: str | None,
                           split_column: str | None, filters: list[str] | None, task: str | None):
    """The labelled dataset as a :class:`radroute.data.Manifest`, from any supported source."""
    from radroute.data import load_source
    from radroute.data.sources import SHARED_SETS, from_dicom_labels

    options: dict[str, Any] = {}
    if label_column:
        options["label_columns"] = _pairs(label_column, "--label-column")
    if patient_column:
        options["patient_column"] = patient_column
    if split_column:
        options["split_column"] = split_column
    if filters:
        options["filters"] = list(filters)
    if dicom_labels is not None:
        if path_column:
            options["key_column"] = path_column
        return from_dicom_labels(data, dicom_labels, **options)
    if path_column:
        options["path_column"] = path_column
    suffix = Path(data).suffix.lower()
    is_csv = suffix == ".csv" or (data in SHARED_SETS and "csv" in SHARED_SETS[data])
    if options and not is_csv:
        raise typer.BadParameter("--label-column/--path-column/--patient-column/--split-column/--filter "
                                 "apply to CSV sources and --dicom-labels")
    if task and not is_csv and suffix != ".json":
        options["task"] = task
    return load_source(data, **options)


def _default_size(arch: str, backbone_pkg) -> int:
    from radroute.models import get_default_cfg, is_model

    if backbone_pkg is not None:
        return int(backbone_pkg.preprocessing.get("size", 224))
    return int(get_default_cfg(arch).get("input_size", 224)) if is_model(arch) else 224


def _backbone_package(backbone: str | None):
    from radroute.errors import ModelNotFoundError
    from radroute.models import ModelPackage

    if backbone is None:
        return None
    try:
        return ModelPackage.load(backbone)
    except ModelNotFoundError:
        return None


def train(
    ctx: typer.Context,
    data: str = typer.Option(..., "--data", "-d", help="dataset: folder per class, CSV manifest, MedMNIST "
                             ".npz, DICOM folder (with --dicom-labels), saved manifest .json, or a shared "
                             "set name (medpix2, chest_views, organamnist)"),
    out: Path = typer.Option(..., "--out", "-o", help="package folder to write (log, checkpoints, splits too)"),
    arch: str = typer.Option("menkovski2015", "--arch", "-a", help="radroute or timm architecture name"),
    mode: str = typer.Option("scratch", "--mode", help="scratch | finetune | head | features-svm | features-logreg"),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="model package (path or bundled name) or "
                                           "architecture with local pretrained weights: start / features"),
    pretrained_path: Optional[Path] = typer.Option(None, "--pretrained-path", help="weights file (.safetensors/"
                                                   ".pth, RGB ok) to start from"),
    dicom_labels: Optional[Path] = typer.Option(None, "--dicom-labels", help="label CSV for a DICOM folder "
                                                "(keyed by path or SOPInstanceUID)"),
    label_column: Optional[list[str]] = typer.Option(None, "--label-column", help="CSV: TASK=COLUMN (repeatable)"),
    path_column: Optional[str] = typer.Option(None, "--path-column", help="CSV: column with the image paths"),
    patient_column: Optional[str] = typer.Option(None, "--patient-column", help="CSV: column with patient ids"),
    split_column: Optional[str] = typer.Option(None, "--split-column", help="CSV: column with given splits"),
    filters: Optional[list[str]] = typer.Option(None, "--filter", help="CSV: keep rows COLUMN==VALUE[|V2] "
                                                "or COLUMN!=VALUE (repeatable)"),
    task: Optional[str] = typer.Option(None, "--task", help="task name for folder / .npz sources"),
    splits: Optional[Path] = typer.Option(None, "--splits", help="split file to reuse (default: OUT/splits.csv; "
                                          "written when absent: patient-grouped, stratified 0.7/0.15/0.15)"),
    train_split: str = typer.Option("train", "--train-split", help="split to train on"),
    val_split: str = typer.Option("val", "--val-split", help="split for early stopping, metrics, thresholds"),
    size: Optional[int] = typer.Option(None, "--size", min=8, help="input size (default: the architecture's, "
                                       "or the backbone package's)"),
    window: str = typer.Option("auto", "--window", help="auto | percentile | CT preset (brain, soft_tissue, "
                               "abdomen, lung, bone)"),
    keep_aspect: bool = typer.Option(True, "--keep-aspect/--stretch", help="pad to square or stretch"),
    optimizer: str = typer.Option("adam", "--optimizer", help="adam (Pham: 1e-4, cosine warm restarts) | sgd "
                                  "(Rajkomar: Nesterov 0.9, weight decay, step decay)"),
    epochs: int = typer.Option(30, "--epochs", min=1),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    lr: Optional[float] = typer.Option(None, "--lr", help="learning rate (default: the optimizer preset's)"),
    weight_decay: Optional[float] = typer.Option(None, "--weight-decay"),
    augment: str = typer.Option("none", "--augment", help="roth2015 | rajkomar2016 | menkovski2015 | none"),
    balance: bool = typer.Option(False, "--balance/--no-balance", help="draw classes equally often (Roth)"),
    patience: int = typer.Option(5, "--patience", min=0, help="early stopping: epochs without improvement (0: off)"),
    seed: int = typer.Option(0, "--seed"),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes"),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch CPU threads"),
    max_train_samples: Optional[int] = typer.Option(None, "--max-train-samples", min=1,
                                                    help="train on a seeded random subset (quick runs)"),
    time_budget: Optional[float] = typer.Option(None, "--time-budget", help="stop training after MIN minutes"),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 on AMX/AVX512-BF16 CPUs, mixed on GPU) "
                                  "| fp32 | bf16 | fp16"),
    device: Optional[str] = typer.Option(None, "--device", help="cpu | cuda (default: the GPU if any)"),
    channels_last: bool = typer.Option(True, "--channels-last/--no-channels-last"),
    label_smoothing: float = typer.Option(0.0, "--label-smoothing", min=0.0, max=0.5),
    svm_c: float = typer.Option(1.0, "--svm-c", help="features-svm/logreg: regularisation C"),
    abstain_target: float = typer.Option(0.99, "--abstain-target", help="validation accuracy of accepted "
                                         "images that sets the abstention threshold"),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="preprocessing cache (default "
                                             "$RADROUTE_CACHE or ~/.cache/radroute)"),
    name: Optional[str] = typer.Option(None, "--name", help="package name (default: the OUT folder name)"),
    resume: bool = typer.Option(False, "--resume", help="continue from OUT/checkpoints/last.pt"),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Train an anatomy / body-part / view classifier and write a model package to OUT."""
    import numpy as np
    import torch
    import torch.distributed as dist

    from radroute.data import Preprocessing, ensure_splits
    from radroute.data.augment import build_augmentation
    from radroute.data.cache import build_cache
    from radroute.data.dataset import class_weights
    from radroute.data.splits import write_splits
    from radroute.errors import RadrouteError
    from radroute.training import MODES, TrainConfig, fit_features_package, fit_package
    from radroute.training.runtime import init_distributed

    if mode not in MODES:
        raise typer.BadParameter(f"choose one of {', '.join(MODES)}", param_hint="--mode")
    if threads:
        torch.set_num_threads(threads)
    rank = init_distributed(device)
    try:
        manifest = load_training_manifest(data, dicom_labels=dicom_labels, label_column=label_column,
                                          path_column=path_column, patient_column=patient_column,
                                          split_column=split_column, filters=filters, task=task)
        out.mkdir(parents=True, exist_ok=True)
        split_file = splits or out / "splits.csv"
        first_task = next(iter(manifest.tasks))
        if rank.is_main:  # rank 0 writes the split file and the cache; the others then read them
            manifest = ensure_splits(manifest, split_file, seed=seed, stratify_task=first_task)
            if split_file != out / "splits.csv":
                write_splits(manifest, out / "splits.csv")
        if rank.enabled:
            dist.barrier()
            if not rank.is_main:
                manifest = ensure_splits(manifest, out / "splits.csv")
        bk_pkg = _backbone_package(backbone)
        pre_kw: dict[str, Any] = {"size": size or _default_size(arch, bk_pkg), "window": window,
                                  "keep_aspect": keep_aspect}
        if bk_pkg is not None:  # features and fine-tuning expect the backbone's intensity scaling
            pre_kw.update(mean=bk_pkg.preprocessing.get("mean", 0.5), std=bk_pkg.preprocessing.get("std", 0.25))
        pre = Preprocessing(**pre_kw)
        if rank.is_main:
            cache = build_cache(manifest, pre, cache_dir, progress=progress)
        if rank.enabled:
            dist.barrier()
        if not rank.is_main:  # reuses the cache rank 0 just built
            cache = build_cache(manifest, pre, cache_dir, progress=False)
        train_idx = cache.indices(train_split)
        if len(train_idx) == 0:
            raise typer.BadParameter(f"no readable samples in split {train_split!r}", param_hint="--train-split")
        if max_train_samples and len(train_idx) > max_train_samples:
            train_idx = np.sort(np.random.default_rng(seed).permutation(train_idx)[:max_train_samples])
        val_idx = cache.indices(val_split)
        features_mode = mode.startswith("features-")
        aug = None if features_mode or augment == "none" else build_augmentation(augment, pre.size)
        train_ds = cache.dataset(indices=train_idx, augment=aug)
        val_ds = cache.dataset(indices=val_idx) if len(val_idx) else None
        weights = None
        if balance and not features_mode:
            weights = class_weights(manifest.label_matrix()[train_idx, 0])
        described = manifest.describe()
        data_info = {"source": data, "reader": manifest.origin.get("reader"), "train_split": train_split,
                     "val_split": val_split, "split_file": str(split_file), "n_train": int(len(train_idx)),
                     "n_val": int(len(val_idx)), "max_train_samples": max_train_samples,
                     "augment": augment, "balance": balance, "unreadable": len(cache.errors),
                     "description": described}
        config = TrainConfig(epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                             weight_decay=weight_decay, mode="scratch" if features_mode else mode,
                             patience=patience or None, seed=seed, workers=workers, precision=precision,
                             channels_last=channels_last, device=device, time_budget_min=time_budget,
                             label_smoothing=label_smoothing, progress=progress)
        if features_mode:
            if backbone is None:
                raise typer.BadParameter("features modes need --backbone (a package, or an architecture "
                                         "with local pretrained weights)", param_hint="--backbone")
            pkg = fit_features_package(backbone, manifest.tasks, train_ds, val_ds, pre, out, mode=mode,
                                       config=config, name=name, pretrained_path=pretrained_path, C=svm_c,
                                       data=data_info, abstain_target=abstain_target, command=command_line(ctx))
        else:
            pkg = fit_package(arch, manifest.tasks, train_ds, val_ds, pre, out, config, name=name,
                              backbone=backbone, pretrained_path=pretrained_path, sample_weights=weights,
                              data=data_info, abstain_target=abstain_target, resume=resume,
                              command=command_line(ctx))
    except RadrouteError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    if rank.is_main:
        summary = {"package": str(out), "name": pkg.name, "architecture": pkg.architecture, "mode": mode,
                   "version": pkg.version, "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
                   "validation": {t: {"accuracy": m.get("accuracy", {}).get("value"),
                                      "macro_auc": m.get("macro", {}).get("auc"),
                                      "threshold": pkg.thresholds.get(t)} for t, m in pkg.metrics.items()},
                   "train_seconds": pkg.training.get("train_seconds"), "stop_reason": pkg.training.get("stop_reason")}
        json.dump(summary, sys.stdout, indent=2)
        sys.stdout.write("\n")
    if rank.enabled:
        dist.destroy_process_group()
