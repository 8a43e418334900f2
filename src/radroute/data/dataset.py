"""torch datasets of ``(x, y)`` and per-class balancing.

``x`` is float32 (1, S, S) through :class:`Preprocessing` (augmentation, when given, runs on the
[0, 1] image before normalisation, so padding stays black); ``y`` is int64 (n_tasks,) with class
indices in ``manifest.tasks`` order and ``-1`` for a missing label.
"""
from __future__ import annotations

from typing import Callable, Protocol, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, WeightedRandomSampler

from radroute.data.manifest import NPZ_PREFIX, Manifest
from radroute.data.preprocess import Preprocessing
from radroute.data.sources import load_npz_images



class ImageCache(Protocol):
    """What :class:`CachedDataset` reads (:class:`radroute.data.cache.PreprocessedCache` is one)."""

    images: np.ndarray
    manifest: Manifest
    preprocessing: Preprocessing


def _finish(x01: torch.Tensor, pre: Preprocessing, augment: Callable | None) -> torch.Tensor:
    if augment is not None:
        x01 = augment(x01)
    return (x01 - pre.mean) / pre.std


class CachedDataset(Dataset):
    """``(x, y)`` over a :class:`~radroute.data.cache.PreprocessedCache` (readable samples only)."""

    def __init__(self, cache: ImageCache, indices: Sequence[int], augment: Callable | None = None):
        self.cache = cache
        self.indices = np.asarray(indices, np.int64)
        self.labels = cache.manifest.label_matrix()[self.indices]  # (n, n_tasks)
        self.augment = augment
        self.preprocessing = cache.preprocessing

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        a = np.asarray(self.cache.images[self.indices[i]])
        x = torch.from_numpy(a.astype(np.float32))
        if a.dtype == np.uint8:
            x = x / 255.0
        return _finish(x[None], self.preprocessing, self.augment), torch.from_numpy(self.labels[i])


class ManifestDataset(Dataset):
    """``(x, y)`` decoding each file on access (no cache): for small sets and evaluation.

    A file that cannot be read raises its :class:`~radroute.errors.RadrouteError`; build a cache
    to have unreadable files skipped and recorded instead.
    """

    def __init__(self, manifest: Manifest, preprocessing: Preprocessing, augment: Callable | None = None):
        self.manifest = manifest
        self.preprocessing = preprocessing
        self.labels = manifest.label_matrix()
        self.augment = augment
        self._arrays: dict[str, np.ndarray] | None = None  # .npz images, loaded once on first use

    def __len__(self) -> int:
        return len(self.manifest)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.manifest.samples[i]
        if s.source.startswith(NPZ_PREFIX):
            if self._arrays is None:
                npz = [x.source for x in self.manifest.samples if x.source.startswith(NPZ_PREFIX)]
                self._arrays = dict(zip(npz, load_npz_images(self.manifest.npz, npz)))
            pixels = self._arrays[s.source]
        else:
            pixels = self.preprocessing.read(s.source, frame=s.frame).pixels
        x = torch.from_numpy(self.preprocessing.square(pixels))[None]
        return _finish(x, self.preprocessing, self.augment), torch.from_numpy(self.labels[i])


def class_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample weight 1 / (samples of its class); missing labels (-1) get the mean weight."""
    labels = np.asarray(labels).reshape(-1)
    known = labels >= 0
    counts = np.bincount(labels[known]) if known.any() else np.zeros(1)
    w = np.zeros(len(labels), np.float64)
    w[known] = 1.0 / counts[labels[known]]
    w[~known] = w[known].mean() if known.any() else 1.0
    return w


def balanced_sampler(labels: np.ndarray, num_samples: int | None = None,
                     generator: torch.Generator | None = None) -> WeightedRandomSampler:
    """A sampler drawing every class equally often (with replacement), as Roth et al. balanced
    their classes; ``labels`` are one task's class indices. One epoch = ``num_samples``
    (default: the dataset size)."""
    w = class_weights(labels)
    return WeightedRandomSampler(torch.as_tensor(w, dtype=torch.double), num_samples or len(w),
                                 replacement=True, generator=generator)


def oversample_indices(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Indices repeating each class's samples until every class has as many as the largest
    (every sample kept at least once; extra copies drawn at random), shuffled."""
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels[labels >= 0])
    target = max((labels == c).sum() for c in classes) if len(classes) else 0
    out = [np.flatnonzero(labels < 0)]
    for c in classes:
        idx = np.flatnonzero(labels == c)
        extra = rng.choice(idx, target - len(idx), replace=True) if target > len(idx) else idx[:0]
        out += [idx, extra]
    result = np.concatenate(out)
    rng.shuffle(result)
    return result
