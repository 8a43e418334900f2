"""Train/val/test splits: stratified by label, grouped by patient, seeded, saved to CSV.

``ensure_splits(manifest, "splits.csv")`` is the usual entry point: the first run computes the
splits and writes them; later runs read the file back so the same images land in the same split.
"""
from __future__ import annotations

import csv
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from radroute.data.manifest import SPLITS, Manifest, Sample, normalise_split
from radroute.errors import InvalidConfigError

DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)
_FOLDS = 20  # splits are built from 20 patient-disjoint, stratified folds (5 % each)


def _groups(samples: Sequence[Sample]) -> np.ndarray:
    """Patient of each sample; samples without one are their own group."""
    return np.array([s.patient_id if s.patient_id is not None else f"\0{s.key}" for s in samples], object)


def _strata(manifest: Manifest, samples: Sequence[Sample], task: str | None) -> np.ndarray:
    task = task or next(iter(manifest.tasks))
    return np.array([s.labels.get(task, "\0missing") for s in samples], object)


def _fold_counts(fractions: Sequence[float], n_folds: int) -> list[int]:
    """How many of ``n_folds`` folds each split gets (largest remainder, non-zero stays non-zero)."""
    raw = np.asarray(fractions, float) / sum(fractions) * n_folds
    counts = np.floor(raw).astype(int)
    counts[(raw > 0) & (counts == 0)] = 1
    while counts.sum() > n_folds:
        counts[np.argmax(counts)] -= 1
    while counts.sum() < n_folds:
        counts[np.argmax(raw - counts)] += 1
    return counts.tolist()


def split_labels(strata: np.ndarray, groups: np.ndarray, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                 seed: int = 0, names: Sequence[str] = SPLITS) -> np.ndarray:
    """A split name per sample: no group in two splits, class proportions kept roughly equal.

    Uses scikit-learn's ``StratifiedGroupKFold`` (``StratifiedShuffleSplit``-like folds when every
    group is one sample) into 20 folds, then gives each split its share of folds.
    """
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if len(fractions) != len(names) or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise InvalidConfigError(f"invalid split fractions {list(fractions)}")
    n = len(strata)
    _, strata_idx = np.unique(strata.astype(str), return_inverse=True)
    uniq_groups, group_idx = np.unique(groups.astype(str), return_inverse=True)
    # scikit-learn refuses more folds than the largest class has members
    n_folds = max(2, min(_FOLDS, len(uniq_groups), int(np.bincount(strata_idx).max())))
    fold = np.empty(n, np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "least populated class has fewer members than n_splits"
        if len(uniq_groups) == n:
            # one sample per group: plain stratified folds (much faster than the grouped search)
            counts = np.bincount(strata_idx)
            y = np.where(counts[strata_idx] >= n_folds, strata_idx, -1)  # pool rare classes
            kfold = StratifiedKFold(n_folds, shuffle=True, random_state=seed)
            splits = kfold.split(np.zeros(n), y)
        else:
            kfold = StratifiedGroupKFold(n_folds, shuffle=True, random_state=seed)
            splits = kfold.split(np.zeros(n), strata_idx, group_idx)
        for k, (_, test) in enumerate(splits):
            fold[test] = k
    # shuffle which folds go to which split, so fold sizes do not favour a split
    order = np.random.default_rng(seed).permutation(n_folds)
    per_split = _fold_counts(fractions, n_folds)
    fold_split = np.empty(n_folds, object)
    start = 0
    for name, c in zip(names, per_split):
        fold_split[order[start:start + c]] = name
        start += c
    return fold_split[fold]


def assign_splits(manifest: Manifest, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0,
                  stratify_task: str | None = None, keep_given: bool = True) -> Manifest:
    """A copy of ``manifest`` where every sample has a split.

    With ``keep_given`` the splits a source ships (MedMNIST, MedPix ``train``/``dev``) stay;
    samples without one whose patient already has a split join it; the rest are split by
    :func:`split_labels` over ``fractions`` of (train, val, test).
    """
    samples = [replace(s) for s in manifest.samples]
    if not keep_given:
        for s in samples:
            s.split = None
    patient_split = {s.patient_id: s.split for s in samples if s.split and s.patient_id is not None}
    for s in samples:
        if s.split is None and s.patient_id in patient_split:
            s.split = patient_split[s.patient_id]
    todo = [i for i, s in enumerate(samples) if s.split is None]
    if todo:
        part = [samples[i] for i in todo]
        names = split_labels(_strata(manifest, part, stratify_task), _groups(part), fractions, seed)
        for i, name in zip(todo, names):
            samples[i].split = str(name)
    out = replace(manifest, samples=samples, origin=dict(manifest.origin))
    out.origin["splits"] = {"fractions": list(fractions), "seed": seed, "keep_given": keep_given,
                            "assigned": len(todo)}
    return out


def _key(manifest: Manifest, s: Sample) -> str:
    """The sample's key in a split file: paths relative to the manifest root when below it."""
    src = s.source
    if manifest.root and not src.startswith("npz:"):
        try:
            src = Path(src).relative_to(manifest.root).as_posix()
        except ValueError:
            pass
    return src if s.frame is None else f"{src}#{s.frame}"


def write_splits(manifest: Manifest, path: str | Path) -> Path:
    """Write ``key,patient_id,split`` per sample (keys relative to the dataset root)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["key", "patient_id", "split"])
        for s in manifest.samples:
            w.writerow([_key(manifest, s), s.patient_id or "", s.split or ""])
    return path


def read_splits(manifest: Manifest, path: str | Path, strict: bool = True) -> Manifest:
    """Apply a split file to ``manifest``. With ``strict``, every sample must be listed."""
    path = Path(path)
    with open(path, newline="") as f:
        table = {row["key"]: normalise_split(row["split"]) for row in csv.DictReader(f)}
    samples, missing = [], 0
    for s in manifest.samples:
        split = table.get(_key(manifest, s))
        missing += split is None
        samples.append(replace(s, split=split))
    if missing and strict:
        raise InvalidConfigError(f"{missing} of {len(samples)} samples are not in the split file", path)
    out = replace(manifest, samples=samples, origin=dict(manifest.origin))
    out.origin["splits"] = {"file": str(path)}
    return out


def ensure_splits(manifest: Manifest, path: str | Path | None, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                  seed: int = 0, stratify_task: str | None = None, keep_given: bool = True) -> Manifest:
    """Read the splits from ``path`` when it exists, else assign them and write ``path``."""
    if path is not None and Path(path).exists():
        return read_splits(manifest, path)
    out = assign_splits(manifest, fractions, seed, stratify_task, keep_given)
    if path is not None:
        write_splits(out, path)
        out.origin["splits"]["file"] = str(path)
    return out
