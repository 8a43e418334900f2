"""``radroute evaluate`` and ``radroute robustness``: a model package against labelled data.

Both read a dataset the way ``radroute train`` does (``radroute.data.load_source``), decode it
once into the preprocessing cache at the model's resolution, and write their results into
``--out``: ``metrics.json`` + ``report.md`` + PNG figures, or ``robustness.json`` +
``robustness.md``. See docs/evaluation.md.
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Optional

import numpy as np
import typer

from radroute.cli._common import command_line

SPLIT_HELP = "split to evaluate: train, val, test, or 'all' for every sample"


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


@contextmanager
def _typed_errors():
    """A RadrouteError (unreadable dataset, bad package) ends the command with code 2 and one line."""
    from radroute.errors import RadrouteError

    try:
        yield
    except RadrouteError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


@contextmanager
def _progress():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=False) as bar:
        yield bar


def _same_source(a: str, b: str) -> bool:
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


def split_file_of(package, data: str) -> Path | None:
    """The split file ``radroute train`` wrote for ``package`` when it trained on ``data`` and
    the file is still there."""
    recorded = ((package.training or {}).get("data") or {}) if package else {}
    path, source = recorded.get("split_file"), recorded.get("source")
    if not path or not Path(path).is_file() or (source is not None and not _same_source(str(source), data)):
        return None
    return Path(path)


def load_labelled(data: str, *, split: str, splits: Path | None, limit: int | None = None, seed: int = 0,
                  package=None, **source_options: Any):
    """The dataset's manifest restricted to ``split`` (and a seeded subset of ``limit`` images).

    The dataset is read exactly as ``radroute train`` reads it (``source_options`` are that
    command's: ``dicom_labels``, ``label_column``, ``path_column``, ``patient_column``,
    ``split_column``, ``filters``, ``task``). Samples without a split get the one in ``splits``,
    else in the split file the package's training run recorded, else one assigned as
    ``radroute train`` assigns it by default (seed 0, 0.7/0.15/0.15, grouped by patient).
    """
    from radroute.cli.train import load_training_manifest
    from radroute.data import ensure_splits

    options = {k: source_options.get(k) for k in ("dicom_labels", "label_column", "path_column",
                                                  "patient_column", "split_column", "filters", "task")}
    manifest = load_training_manifest(data, **options)
    if split != "all":
        splits = splits or split_file_of(package, data)
        if splits is not None:
            _err(f"splits from {splits}")
            manifest = ensure_splits(manifest, splits)
        elif any(s.split is None for s in manifest.samples):
            _err("note: samples without a split were assigned one as radroute train does by default "
                 "(seed 0, 0.7/0.15/0.15, grouped by patient); pass --splits to use a run's split file")
            manifest = ensure_splits(manifest, None, stratify_task=next(iter(manifest.tasks)))
        manifest = manifest.split(split)
    if limit is not None and len(manifest) > limit:
        rng = np.random.default_rng(seed)
        manifest = manifest.subset(np.sort(rng.permutation(len(manifest))[:limit]))
    if len(manifest) == 0:
        raise typer.BadParameter(f"no samples in split {split!r} of {data}", param_hint="--split")
    return manifest


def _load(model: str, backend: str, threads: int | None, data: str, split: str, splits: Path | None,
          limit: int | None, seed: int, cache_dir: Path | None, **source_options: Any):
    """Predictor, manifest of the split, its cache, readable indices and the label alignment."""
    from radroute.data.cache import build_cache
    from radroute.evaluation.labelled import align_labels
    from radroute.inference import load_model

    predictor = load_model(model, backend=backend, threads=threads)
    manifest = load_labelled(data, split=split, splits=splits, limit=limit, seed=seed,
                             package=predictor.package, **source_options)
    cache = build_cache(manifest, predictor.preprocessing, cache_dir)
    indices = cache.indices()
    alignment = align_labels(manifest.tasks, manifest.label_matrix()[indices], predictor.package.tasks)
    for t, src in alignment.source_task.items():
        if src is None:
            _err(f"warning: the data has no labels for task {t!r} (its tasks: {', '.join(manifest.tasks)})")
        if alignment.unknown_classes.get(t):
            _err(f"warning: task {t!r}: classes the model does not know are left out: {alignment.unknown_classes[t]}")
    return predictor, manifest, cache, indices, alignment


def _info(command: str, predictor, data: str, split: str, manifest, cache, alignment, **more) -> dict[str, Any]:
    return {
        "model": predictor.name, "model_version": predictor.version,
        "architecture": predictor.package.architecture, "backend": predictor.backend,
        "data": data, "split": split, "images": len(manifest), "unreadable": len(cache.errors),
        "labels": alignment.to_dict(), **more,
        "command": command,
    }


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
    from radroute.evaluation.labelled import feature_subset, predict_cached, task_predictions
    from radroute.evaluation.report import write_report

    t0 = time.perf_counter()
    with _typed_errors():
        predictor, manifest, cache, indices, alignment = _load(
            model, backend, threads, data, split, splits, limit, seed, cache_dir, label_column=label_column,
            path_column=path_column, patient_column=patient_column, split_column=split_column,
            dicom_labels=dicom_labels, filters=filter, task=task)
    want_features = tsne and backend == "torch"
    rows = feature_subset(len(indices), tsne_points, seed) if want_features else None
    with _progress() as bar:
        job = bar.add_task("predicting", total=len(indices))
        probs, feats = predict_cached(predictor, cache.images, indices, batch_size, rows,
                                      progress=lambda n: bar.advance(job, n))
    tasks = task_predictions(predictor.package.tasks, alignment, probs, feats, rows)
    tasks = {t: p for t, p in tasks.items() if alignment.source_task[t] is not None}
    if not tasks:
        raise typer.BadParameter("the dataset has labels for none of the model's tasks "
                                 f"({', '.join(predictor.package.tasks)})", param_hint="--data")
    info = _info(command_line(ctx), predictor, data, split, manifest, cache, alignment, seed=seed)
    _err("writing report" + (" (t-SNE takes a few seconds)" if want_features else ""))
    results = write_report(out, tasks, info=info, seed=seed, n_resamples=resamples,
                           figures=figures, tsne=want_features)
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
    from radroute.evaluation.plots import plot_perturbation_examples
    from radroute.evaluation.robustness import default_perturbations, robustness_markdown, run_robustness

    perts = default_perturbations()
    if perturbation:
        known = {p.name for p in perts}
        unknown = sorted(set(perturbation) - known)
        if unknown:
            raise typer.BadParameter(f"unknown {unknown}; known: {', '.join(sorted(known))}",
                                     param_hint="--perturbation")
        perts = [p for p in perts if p.name in set(perturbation)]
    t0 = time.perf_counter()
    with _typed_errors():
        predictor, manifest, cache, indices, alignment = _load(
            model, backend, threads, data, split, splits, limit, seed, cache_dir, label_column=label_column,
            path_column=path_column, patient_column=patient_column, split_column=split_column,
            dicom_labels=dicom_labels, filters=filter, task=task)
    pre = predictor.preprocessing
    images = [_to01(cache.images[i]) for i in indices]

    def predict(batch: list[np.ndarray]) -> dict[str, np.ndarray]:
        return predictor.predict_arrays(np.stack([pre.from_array(a) for a in batch]))

    labels = {t: y for t, y in alignment.labels.items() if alignment.source_task[t] is not None}
    with _progress() as bar:
        job = bar.add_task("perturbations", total=len(perts))
        results = run_robustness(predict, images, labels, perts, batch_size,
                                 progress=lambda name: bar.advance(job, 1))
    out.mkdir(parents=True, exist_ok=True)
    info = _info(command_line(ctx), predictor, data, split, manifest, cache, alignment, seed=seed)
    results = {"info": info, **results, "figures": {}}
    if images:
        plot_perturbation_examples(images[0], perts, out / "perturbations.png")
        results["figures"] = {"examples": "perturbations.png"}
    (out / "robustness.json").write_text(json.dumps(results, indent=1) + "\n")
    md = robustness_markdown(results, {k: info[k] for k in ("model", "model_version", "data", "split", "images")})
    if images:
        md += "\n![One image under each perturbation](perturbations.png)\n"
    (out / "robustness.md").write_text(md)
    for t, r in results["tasks"].items():
        worst = max(r["perturbations"], key=lambda row: row["changed"]["value"] or 0, default=None)
        if worst and worst["changed"]["value"]:
            typer.echo(f"{t}: most label changes under {worst['name']}: {100 * worst['changed']['value']:.1f} %")
        elif worst:
            typer.echo(f"{t}: no perturbation changed a label")
    typer.echo(f"wrote {out / 'robustness.json'} and {out / 'robustness.md'} in {time.perf_counter() - t0:.1f} s")


def _to01(arr: np.ndarray) -> np.ndarray:
    """A cached image (uint8 or float16, [0, 1] scaled) -> float32 [0, 1]."""
    a = np.asarray(arr)
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)
