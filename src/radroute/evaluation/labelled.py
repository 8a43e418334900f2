"""Run a model over a labelled dataset: the split to evaluate, labels aligned with the model's
classes, the model's outputs.

:func:`load_labelled` reads the dataset as ``radroute train`` does. The rest needs no model
code: it takes any object with the :class:`~radroute.inference.Predictor` methods
``predict_arrays(x) -> {task: probs}`` and ``features(x) -> (N, D)`` plus a ``preprocessing``
attribute, and a :class:`~radroute.data.cache.PreprocessedCache` (images decoded once at model
resolution).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from radroute.data import DataSource, Manifest, ensure_splits
from radroute.errors import InvalidConfigError
from radroute.evaluation.report import TaskPredictions

#: t-SNE / silhouette use at most this many images (the rest would cost time and show nothing new)
DEFAULT_FEATURE_POINTS = 1000


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _same_source(a: str, b: str) -> bool:
    return a == b or (Path(a).exists() and Path(b).exists() and Path(a).resolve() == Path(b).resolve())


def split_file_of(package: Any, data: str | None) -> Path | None:
    """The split file ``radroute train`` wrote for ``package`` when it trained on ``data`` and
    the file is still there."""
    recorded = ((package.training or {}).get("data") or {}) if package else {}
    path, source = recorded.get("split_file"), recorded.get("source")
    if not path or not Path(path).is_file() or data is None:
        return None
    if source is not None and not _same_source(str(source), str(data)):
        return None
    return Path(path)


def load_labelled(data: str | Path | Manifest | DataSource, *, split: str, splits: str | Path | None = None,
                  limit: int | None = None, seed: int = 0, package: Any = None,
                  log: Callable[[str], None] = _stderr, **source_options: Any) -> Manifest:
    """The dataset's manifest restricted to ``split`` (``"all"``: every sample) and a seeded
    subset of ``limit`` images.

    The dataset is read exactly as ``radroute train`` reads it (``source_options`` are the
    :class:`~radroute.data.DataSource` fields: ``dicom_labels``, ``label_columns``,
    ``path_column``, ``patient_column``, ``split_column``, ``filters``, ``task``). Samples
    without a split get the one in ``splits``, else in the split file the package's training
    run recorded, else one assigned as ``radroute train`` assigns it by default (seed 0,
    0.7/0.15/0.15, grouped by patient). ``log`` receives the notes on where splits came from.
    """
    source = data if isinstance(data, DataSource) else DataSource(data=data, **source_options)
    manifest = source.load()
    if split != "all":
        splits = splits or split_file_of(package, source.source_name)
        if splits is not None:
            log(f"splits from {splits}")
            manifest = ensure_splits(manifest, splits)
        elif any(s.split is None for s in manifest.samples):
            log("note: samples without a split were assigned one as radroute train does by default "
                "(seed 0, 0.7/0.15/0.15, grouped by patient); pass --splits to use a run's split file")
            manifest = ensure_splits(manifest, None, stratify_task=next(iter(manifest.tasks)))
        manifest = manifest.split(split)
    if limit is not None and len(manifest) > limit:
        rng = np.random.default_rng(seed)
        manifest = manifest.subset(np.sort(rng.permutation(len(manifest))[:limit]))
    if len(manifest) == 0:
        raise InvalidConfigError(f"no samples in split {split!r} of {source.source_name}")
    return manifest


@dataclass
class LabelAlignment:
    """Per model task: the dataset task it is read from, and labels as model class indices."""

    labels: dict[str, np.ndarray]                 # task -> (N,) model class index, -1 = missing
    source_task: dict[str, str | None]            # model task -> dataset task (None: no labels)
    unknown_classes: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset classes the model lacks

    def to_dict(self) -> dict[str, Any]:
        return {"source_task": self.source_task, "unknown_classes": self.unknown_classes,
                "labelled": {t: int((y >= 0).sum()) for t, y in self.labels.items()}}


def align_labels(dataset_tasks: dict[str, Sequence[str]], y: np.ndarray,
                 model_tasks: dict[str, Sequence[str]]) -> LabelAlignment:
    """Map a dataset's label matrix ``y`` (N, n_dataset_tasks; -1 missing) onto the model's tasks.

    A model task reads the dataset task of the same name; when both have a single task they
    are paired whatever their names (a folder-per-class source calls its task ``label``).
    Class names match exactly, else case-insensitively; dataset classes the model does not
    know become missing labels and are counted in ``unknown_classes``.
    """
    y = np.asarray(y).reshape(len(y), -1)
    names = list(dataset_tasks)
    labels: dict[str, np.ndarray] = {}
    source: dict[str, str | None] = {}
    unknown: dict[str, dict[str, int]] = {}
    for task, classes in model_tasks.items():
        src = task if task in dataset_tasks else (names[0] if len(names) == 1 and len(model_tasks) == 1 else None)
        source[task] = src
        if src is None:
            labels[task] = np.full(len(y), -1, np.int64)
            continue
        exact = {c: i for i, c in enumerate(classes)}
        folded = {str(c).casefold(): i for i, c in enumerate(classes)}
        lookup = np.array([exact.get(c, folded.get(str(c).casefold(), -1)) for c in dataset_tasks[src]] + [-1],
                          np.int64)
        col = y[:, names.index(src)]
        mapped = lookup[col]  # col == -1 picks the trailing -1
        labels[task] = mapped
        lost = (col >= 0) & (mapped < 0)
        if lost.any():
            cls = list(dataset_tasks[src])
            values, counts = np.unique(col[lost], return_counts=True)
            unknown[task] = {cls[v]: int(c) for v, c in zip(values, counts)}
    return LabelAlignment(labels, source, unknown)


def predict_cached(predictor: Any, images01: np.ndarray, indices: Sequence[int], batch_size: int = 64,
                   feature_rows: Sequence[int] | None = None,
                   progress: Callable[[int], None] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Probabilities for ``images01[indices]`` ((N, S, S) in [0, 1] or uint8, e.g. a cache's
    ``images``) and penultimate features for the positions ``feature_rows`` (into ``indices``).

    Returns ``({task: (len(indices), K)}, features (len(feature_rows), D) or None)``.
    """
    pre = predictor.preprocessing
    indices = np.asarray(indices, np.int64)
    want = np.zeros(len(indices), bool)
    if feature_rows is not None:
        want[np.asarray(feature_rows, np.int64)] = True
    probs: dict[str, list[np.ndarray]] = {}
    feats: list[np.ndarray] = []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        x = pre.normalise(np.asarray(images01[chunk]))[:, None]
        for task, p in predictor.predict_arrays(x).items():
            probs.setdefault(task, []).append(p)
        sel = want[start:start + batch_size]
        if sel.any():
            feats.append(predictor.features(x[sel]))
        if progress:
            progress(len(chunk))
    out = {t: np.concatenate(v) for t, v in probs.items()}
    if not out:
        out = {t: np.zeros((0, len(c)), np.float32) for t, c in predictor.package.tasks.items()}
    return out, (np.concatenate(feats) if feats else None)


def feature_subset(n: int, max_points: int = DEFAULT_FEATURE_POINTS, seed: int = 0) -> np.ndarray:
    """Sorted positions of at most ``max_points`` of ``n`` rows, seeded."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[:max_points])


def task_predictions(model_tasks: dict[str, Sequence[str]], alignment: LabelAlignment,
                     probs: dict[str, np.ndarray], features: np.ndarray | None = None,
                     feature_rows: np.ndarray | None = None) -> dict[str, TaskPredictions]:
    """One :class:`TaskPredictions` per model task with labels, keeping only labelled rows."""
    out: dict[str, TaskPredictions] = {}
    for task, classes in model_tasks.items():
        y = alignment.labels[task]
        keep = y >= 0
        f, fy = None, None
        if features is not None and feature_rows is not None:
            rows_kept = keep[feature_rows]
            f, fy = features[rows_kept], y[feature_rows][rows_kept]
        out[task] = TaskPredictions(y[keep], probs[task][keep], list(classes), f, fy)
    return out
