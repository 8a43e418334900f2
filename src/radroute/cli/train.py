"""``radroute train``: fit a classifier on labelled images and write a model package.

Multi-GPU / multi-node: ``torchrun --nproc_per_node N $(which radroute) train ...`` (DDP).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Optional

import typer

from radroute.cli._common import command_line, fail


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
    from radroute.errors import RadrouteError
    from radroute.training import TrainJob, run
    from radroute.training.runtime import init_distributed

    try:
        job = TrainJob(
            data=data, dicom_labels=dicom_labels, label_columns=label_column, path_column=path_column,
            patient_column=patient_column, split_column=split_column, filters=filters, task=task,
            out=out, arch=arch, mode=mode, backbone=backbone, pretrained_path=pretrained_path,
            splits=splits, train_split=train_split, val_split=val_split, size=size, window=window,
            keep_aspect=keep_aspect, optimizer=optimizer, epochs=epochs, batch_size=batch_size, lr=lr,
            weight_decay=weight_decay, augment=augment, balance=balance, patience=patience, seed=seed,
            workers=workers, threads=threads, max_train_samples=max_train_samples, time_budget=time_budget,
            precision=precision, device=device, channels_last=channels_last, label_smoothing=label_smoothing,
            svm_c=svm_c, abstain_target=abstain_target, cache_dir=cache_dir, name=name, resume=resume,
            progress=progress, command=command_line(ctx))
        pkg = run(job)
    except RadrouteError as exc:
        raise fail(str(exc)) from exc
    rank = init_distributed(device)  # the process group run() joined, under torchrun
    if rank.is_main:
        json.dump(summary(pkg, out, mode), sys.stdout, indent=2)
        sys.stdout.write("\n")
    if rank.enabled:
        import torch.distributed as dist

        dist.destroy_process_group()


def summary(pkg, out: Path, mode: str) -> dict[str, Any]:
    """The JSON the command prints: where the package is and its validation figures."""
    return {"package": str(out), "name": pkg.name, "architecture": pkg.architecture, "mode": mode,
            "version": pkg.version, "n_train": int(pkg.training["n_train"]), "n_val": int(pkg.training["n_val"]),
            "validation": {t: {"accuracy": m.get("accuracy", {}).get("value"),
                               "macro_auc": m.get("macro", {}).get("auc"),
                               "threshold": pkg.thresholds.get(t)} for t, m in pkg.metrics.items()},
            "train_seconds": pkg.training.get("train_seconds"), "stop_reason": pkg.training.get("stop_reason")}
