"""``radroute.evaluation.run(EvalJob)`` and ``evaluate_robustness(RobustnessJob)``: a model
package against labelled data, what ``radroute evaluate`` and ``radroute robustness`` do.

Both read the dataset as ``radroute train`` does (:func:`~radroute.evaluation.labelled.load_labelled`),
decode it once into the preprocessing cache at the model's resolution, and write their results
into ``out``: ``metrics.json`` + ``report.md`` + PNG figures, or ``robustness.json`` +
``robustness.md`` (+ ``perturbations.png``). See docs/evaluation.md.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from radroute.data import DataSource, Manifest
from radroute.errors import InvalidConfigError
from radroute.evaluation.labelled import LabelAlignment, align_labels, load_labelled


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


@dataclass(kw_only=True)
class LabelledJob(DataSource):
    """A model, the labelled data to run it on (a :class:`~radroute.data.DataSource`) and where
    the results go."""

    model: str | Path                    # bundled name or package folder
    out: Path
    split: str = "val"                   # train, val, test or "all"
    splits: Path | None = None           # split file (default: the one the model's training wrote)
    limit: int | None = None             # a seeded random subset of this many images
    cache_dir: Path | None = None
    backend: str = "torch"               # torch | onnx
    batch_size: int = 64
    threads: int | None = None
    seed: int = 0
    command: str | None = None           # recorded in the results' info
    progress: bool = True                # rich progress bars on stderr
    log: Callable[[str], None] = field(default=_stderr, repr=False)  # notes and warnings

    def __post_init__(self) -> None:
        self.out = Path(self.out)


@dataclass(kw_only=True)
class EvalJob(LabelledJob):
    """:func:`run`'s settings: metrics with CIs, figures, t-SNE of penultimate features."""

    resamples: int = 10_000              # bootstrap resamples
    tsne: bool = True                    # t-SNE of penultimate features (torch backend only)
    tsne_points: int = 1000
    figures: bool = True


@dataclass(kw_only=True)
class RobustnessJob(LabelledJob):
    """:func:`evaluate_robustness`'s settings."""

    limit: int | None = 500
    perturbations: Sequence[str] | None = None  # names (default: all of default_perturbations())


@dataclass
class Loaded:
    """A model and the split it is evaluated on, decoded once."""

    predictor: Any
    manifest: Manifest
    cache: Any
    indices: np.ndarray                  # readable samples of the cache
    alignment: LabelAlignment

    def info(self, job: LabelledJob) -> dict[str, Any]:
        """The ``info`` block of the results."""
        p = self.predictor
        return {"model": p.name, "model_version": p.version, "architecture": p.package.architecture,
                "backend": p.backend, "data": job.source_name, "split": job.split,
                "images": len(self.manifest), "unreadable": len(self.cache.errors),
                "labels": self.alignment.to_dict(), "seed": job.seed, "command": job.command}


def load(job: LabelledJob) -> Loaded:
    """Load the model, read the split, build its cache and align the labels (warnings to ``job.log``)."""
    from radroute.data.cache import build_cache
    from radroute.inference import load_model

    predictor = load_model(job.model, backend=job.backend, threads=job.threads)
    manifest = load_labelled(job, split=job.split, splits=job.splits, limit=job.limit, seed=job.seed,
                             package=predictor.package, log=job.log)
    cache = build_cache(manifest, predictor.preprocessing, job.cache_dir, progress=job.progress)
    indices = cache.indices()
    alignment = align_labels(manifest.tasks, manifest.label_matrix()[indices], predictor.package.tasks)
    for t, src in alignment.source_task.items():
        if src is None:
            job.log(f"warning: the data has no labels for task {t!r} (its tasks: {', '.join(manifest.tasks)})")
        if alignment.unknown_classes.get(t):
            job.log(f"warning: task {t!r}: classes the model does not know are left out: "
                    f"{alignment.unknown_classes[t]}")
    return Loaded(predictor, manifest, cache, indices, alignment)


@contextmanager
def _progress(enabled: bool) -> Iterator[Any]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=False, disable=not enabled) as bar:
        yield bar


def run(job: EvalJob) -> dict[str, Any]:
    """Accuracy (Clopper-Pearson CI), precision/recall/F1 (bootstrap CIs), ROC AUC, confusion
    matrix, Youden cutoff, calibration and t-SNE of the model on the split, a section per task
    with labels; writes ``metrics.json``, ``report.md`` and PNGs into ``job.out`` and returns
    the metrics (``{"info", "tasks"}``)."""
    from radroute.evaluation.labelled import feature_subset, predict_cached, task_predictions
    from radroute.evaluation.report import write_report

    loaded = load(job)
    predictor, alignment = loaded.predictor, loaded.alignment
    want_features = job.tsne and job.backend == "torch"
    rows = feature_subset(len(loaded.indices), job.tsne_points, job.seed) if want_features else None
    with _progress(job.progress) as bar:
        task = bar.add_task("predicting", total=len(loaded.indices))
        probs, feats = predict_cached(predictor, loaded.cache.images, loaded.indices, job.batch_size, rows,
                                      progress=lambda n: bar.advance(task, n))
    tasks = task_predictions(predictor.package.tasks, alignment, probs, feats, rows)
    tasks = {t: p for t, p in tasks.items() if alignment.source_task[t] is not None}
    if not tasks:
        raise InvalidConfigError("the dataset has labels for none of the model's tasks "
                                 f"({', '.join(predictor.package.tasks)})", job.source_name)
    job.log("writing report" + (" (t-SNE takes a few seconds)" if want_features else ""))
    return write_report(job.out, tasks, info=loaded.info(job), seed=job.seed, n_resamples=job.resamples,
                        figures=job.figures, tsne=want_features)


def _perturbations(names: Sequence[str] | None) -> list:
    from radroute.evaluation.robustness import default_perturbations

    perts = default_perturbations()
    if not names:
        return perts
    known = {p.name for p in perts}
    unknown = sorted(set(names) - known)
    if unknown:
        raise InvalidConfigError(f"unknown perturbation(s) {unknown}; known: {', '.join(sorted(known))}")
    return [p for p in perts if p.name in set(names)]


def _to01(arr: np.ndarray) -> np.ndarray:
    """A cached image (uint8 or float16, [0, 1] scaled) -> float32 [0, 1]."""
    a = np.asarray(arr)
    return a.astype(np.float32) / 255.0 if a.dtype == np.uint8 else a.astype(np.float32)


def evaluate_robustness(job: RobustnessJob) -> dict[str, Any]:
    """How often the predicted label changes under burned-in text, rotation, half occlusion and
    cropping (Rajkomar 2016 Fig 6); writes ``robustness.json`` + ``robustness.md`` (and
    ``perturbations.png``) into ``job.out`` and returns the results."""
    from radroute.evaluation.plots import plot_perturbation_examples
    from radroute.evaluation.robustness import robustness_markdown, run_robustness

    perts = _perturbations(job.perturbations)
    loaded = load(job)
    predictor = loaded.predictor
    pre = predictor.preprocessing
    images = [_to01(loaded.cache.images[i]) for i in loaded.indices]

    def predict(batch: list[np.ndarray]) -> dict[str, np.ndarray]:
        return predictor.predict_arrays(np.stack([pre.from_array(a) for a in batch]))

    labels = {t: y for t, y in loaded.alignment.labels.items() if loaded.alignment.source_task[t] is not None}
    with _progress(job.progress) as bar:
        task = bar.add_task("perturbations", total=len(perts))
        results = run_robustness(predict, images, labels, perts, job.batch_size,
                                 progress=lambda name: bar.advance(task, 1))
    job.out.mkdir(parents=True, exist_ok=True)
    info = loaded.info(job)
    results = {"info": info, **results, "figures": {}}
    if images:
        plot_perturbation_examples(images[0], perts, job.out / "perturbations.png")
        results["figures"] = {"examples": "perturbations.png"}
    (job.out / "robustness.json").write_text(json.dumps(results, indent=1) + "\n")
    md = robustness_markdown(results, {k: info[k] for k in ("model", "model_version", "data", "split", "images")})
    if images:
        md += "\n![One image under each perturbation](perturbations.png)\n"
    (job.out / "robustness.md").write_text(md)
    return results
