"""A small real OrganAMNIST subset at 28 px, cached once per test session."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from tests.helpers import need_data, one_torch_thread  # noqa: F401  (autouse)


@dataclass
class SmallSet:
    tasks: dict
    preprocessing: object
    train: object
    val: object
    manifest: object


@pytest.fixture(scope="session")
def organ_small(tmp_path_factory) -> SmallSet:
    """300 training and 200 validation images (class-stratified, seeded) of OrganAMNIST."""
    npz = need_data("organamnist", "organamnist_trainval.npz")
    from radroute.data.cache import build_cache
    from radroute.data.preprocess import Preprocessing
    from radroute.data.sources import from_npz

    manifest = from_npz(npz)
    rng = np.random.default_rng(0)
    train_idx = rng.choice(manifest.split_indices("train"), 300, replace=False)
    val_idx = rng.choice(manifest.split_indices("val"), 200, replace=False)
    small = manifest.subset(np.concatenate([train_idx, val_idx]))
    pre = Preprocessing(size=28, mean=0.5, std=0.25)
    cache = build_cache(small, pre, tmp_path_factory.mktemp("cache"), workers=0, progress=False)
    return SmallSet(small.tasks, pre, cache.dataset("train"), cache.dataset("val"), small)
