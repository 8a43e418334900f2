"""``radroute evaluate`` and ``radroute robustness``: a model package against labelled data.

The options become a :class:`radroute.evaluation.EvalJob` / :class:`~radroute.evaluation.RobustnessJob`
for :func:`radroute.evaluation.run` / :func:`~radroute.evaluation.evaluate_robustness`, which
write ``metrics.json`` + ``report.md`` + PNG figures, or ``robustness.json`` + ``robustness.md``
into ``--out``; the command prints a summary. See docs/evaluation.md.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from radroute.cli._common import command_line, fail

SPLIT_HELP = "split to evaluate: train, val, test, or 'all' for every sample"


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


@contextmanager
def _typed_errors():
    """A RadrouteError (unreadable dataset, bad package, bad option) ends the command with code 2
    and one line."""
    from radroute.errors import RadrouteError

    try:
        yield
    except RadrouteError as exc:
        raise fail(str(exc)) from exc


# shared option declarations --------------------------------------------------------------
MODEL = typer.Option(..., "--model", "-m", help="bundled model name or model package folder")
DATA = typer.Option(..., "--data", "-d", help="dataset, as for radroute train: folder per class, CSV, MedMNIST "
                    ".npz, DICOM folder (with --dicom-labels), saved manifest .json, or a shared-set name "
                    "(medpix2, chest_views, organamnist)")
OUT = typer.Option(..., "--out", "-o", help="output folder (created)")
SPLITS = typer.Option(None, "--splits", help="split file (key,patient_id,split); default: the one the "
                      "model's training run wrote, when it exists")
LABEL_COLUMN = typer.Option(None, "--label-column", help="CSV: TASK=COLUMN (repeatable)")
PATH_COLUMN = typer.Option(None, "--path-column", help="CSV: column with the image paths")
PATIENT_COLUMN = typer.Option(None, "--patient-column", help="CSV: column with patient ids")
SPLIT_COLUMN = typer.Option(None, "--split-column", help="CSV: column with given splits")
DICOM_LABELS = typer.Option(None, "--dicom-labels", help="label CSV for a DICOM folder (keyed by path or SOPInstanceUID)")
FILTER = typer.Option(None, "--filter", help="CSV: keep rows COLUMN==VALUE[|V2] or COLUMN!=VALUE (repeatable)")
TASK = typer.Option(None, "--task", help="task name for folder / .npz sources")
CACHE_DIR = typer.Option(None, "--cache-dir", help="preprocessing cache (default $RADROUTE_CACHE or ~/.cache/radroute)")
BACKEND = typer.Option("torch", "--backend", help="torch or onnx (t-SNE features need torch)")
BATCH = typer.Option(64, "--batch-size", min=1)
THREADS = typer.Option(None, "--threads", help="torch / ONNX Runtime threads")
SEED = typer.Option(0, "--seed", help="seed of the bootstrap, subsets and t-SNE")


def evaluate(
    ctx: typer.Context,
    model: str = MODEL, data: str = DATA, out: Path = OUT,
    split: str = typer.Option("val", "--split", help=SPLIT_HELP),
    splits: Optional[Path] = SPLITS, label_column: Optional[list[str]] = LABEL_COLUMN,
    path_column: Optional[str] = PATH_COLUMN, patient_column: Optional[str] = PATIENT_COLUMN,
    split_column: Optional[str] = SPLIT_COLUMN, dicom_labels: Optional[Path] = DICOM_LABELS,
    filter: Optional[list[str]] = FILTER, task: Optional[str] = TASK,  # noqa: A002
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="evaluate a seeded random subset"),
    cache_dir: Optional[Path] = CACHE_DIR, backend: str = BACKEND, batch_size: int = BATCH,
    threads: Optional[int] = THREADS, seed: int = SEED,
    resamples: int = typer.Option(10_000, "--resamples", min=100, help="bootstrap resamples"),
    tsne: bool = typer.Option(True, "--tsne/--no-tsne", help="t-SNE of penultimate features (Roth Fig 6)"),
    tsne_points: int = typer.Option(1000, "--tsne-points", min=10, help="images in the t-SNE"),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="write PNG figures"),
) -> None:
    """Accuracy (Clopper-Pearson CI), precision/recall/F1 (bootstrap CIs), ROC AUC, confusion
    matrix, Youden cutoff, calibration and t-SNE of a model on labelled data -> metrics.json,
    report.md and PNGs in --out, a section per task."""
    from radroute.evaluation import EvalJob, run

    t0 = time.perf_counter()
    with _typed_errors():
        results = run(EvalJob(
            data=data, dicom_labels=dicom_labels, label_columns=label_column, path_column=path_column,
            patient_column=patient_column, split_column=split_column, filters=filter, task=task,
            model=model, out=out, split=split, splits=splits, limit=limit, cache_dir=cache_dir,
            backend=backend, batch_size=batch_size, threads=threads, seed=seed, resamples=resamples,
            tsne=tsne, tsne_points=tsne_points, figures=figures, command=command_line(ctx), log=_err))
    for t, m in results["tasks"].items():
        acc = m["accuracy"]
        auc = m["macro"]["auc"]
        typer.echo(f"{t}: accuracy {acc['value']:.4f} ({acc['ci_low']:.4f}-{acc['ci_high']:.4f}, "
                   f"{acc['k']}/{acc['n']}), macro F1 {m['macro']['f1']['value']:.4f}, "
                   f"mean AUC {'n/a' if auc is None else f'{auc:.4f}'}")
    typer.echo(f"wrote {out / 'metrics.json'} and {out / 'report.md'} in {time.perf_counter() - t0:.1f} s")


def robustness(
    ctx: typer.Context,
    model: str = MODEL, data: str = DATA, out: Path = OUT,
    split: str = typer.Option("val", "--split", help=SPLIT_HELP),
    splits: Optional[Path] = SPLITS, label_column: Optional[list[str]] = LABEL_COLUMN,
    path_column: Optional[str] = PATH_COLUMN, patient_column: Optional[str] = PATIENT_COLUMN,
    split_column: Optional[str] = SPLIT_COLUMN, dicom_labels: Optional[Path] = DICOM_LABELS,
    filter: Optional[list[str]] = FILTER, task: Optional[str] = TASK,  # noqa: A002
    limit: Optional[int] = typer.Option(500, "--limit", min=1, help="images (seeded random subset)"),
    perturbation: Optional[list[str]] = typer.Option(
        None, "--perturbation", "-p", help="only these perturbations (repeatable; default all)"),
    cache_dir: Optional[Path] = CACHE_DIR, backend: str = BACKEND, batch_size: int = BATCH,
    threads: Optional[int] = THREADS, seed: int = SEED,
) -> None:
    """How often the predicted label changes under burned-in text, rotation, half occlusion
    and cropping (Rajkomar 2016 Fig 6) -> robustness.json + robustness.md in --out."""
    from radroute.evaluation import RobustnessJob, evaluate_robustness

    t0 = time.perf_counter()
    with _typed_errors():
        results = evaluate_robustness(RobustnessJob(
            data=data, dicom_labels=dicom_labels, label_columns=label_column, path_column=path_column,
            patient_column=patient_column, split_column=split_column, filters=filter, task=task,
            model=model, out=out, split=split, splits=splits, limit=limit, perturbations=perturbation,
            cache_dir=cache_dir, backend=backend, batch_size=batch_size, threads=threads, seed=seed,
            command=command_line(ctx), log=_err))
    for t, r in results["tasks"].items():
        worst = max(r["perturbations"], key=lambda row: row["changed"]["value"] or 0, default=None)
        if worst and worst["changed"]["value"]:
            typer.echo(f"{t}: most label changes under {worst['name']}: {100 * worst['changed']['value']:.1f} %")
        elif worst:
            typer.echo(f"{t}: no perturbation changed a label")
    typer.echo(f"wrote {out / 'robustness.json'} and {out / 'robustness.md'} in {time.perf_counter() - t0:.1f} s")
