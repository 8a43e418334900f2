from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from radroute.data.manifest import Manifest, Sample
from radroute.data.sources import load_shared
from radroute.data.splits import (
    _fold_counts, assign_splits, ensure_splits, read_splits, split_labels, write_splits,
)
from radroute.errors import InvalidConfigError
from tests.helpers import need_data


def _manifest(n_patients=120, per_patient=4, seed=0) -> Manifest:
    """Imbalanced 3-class data, several images per patient (a patient keeps one class)."""
    rng = np.random.default_rng(seed)
    samples = []
    for p in range(n_patients):
        cls = rng.choice(["a", "b", "c"], p=[0.6, 0.3, 0.1])
        for k in range(rng.integers(1, per_patient + 1)):
            samples.append(Sample(f"/data/p{p}/img{k}.dcm", {"label": str(cls)}, f"p{p}"))
    return Manifest(samples, {"label": ["a", "b", "c"]}, root="/data")


def _patient_splits(m: Manifest) -> dict[str, set]:
    out = defaultdict(set)
    for s in m.samples:
        out[s.patient_id].add(s.split)
    return out


def test_grouped_stratified_split():
    m = _manifest()
    out = assign_splits(m, seed=3)
    assert all(len(v) == 1 for v in _patient_splits(out).values())  # no patient in two splits
    sizes = Counter(s.split for s in out.samples)
    n = len(out)
    for name, frac in zip(("train", "val", "test"), (0.7, 0.15, 0.15)):
        assert abs(sizes[name] / n - frac) < 0.07, sizes
    overall = Counter(s.labels["label"] for s in m.samples)
    for name in ("train", "val", "test"):
        part = Counter(s.labels["label"] for s in out.samples if s.split == name)
        for cls in "abc":
            assert abs(part[cls] / sizes[name] - overall[cls] / n) < 0.1, (name, part)
    assert m.samples[0].split is None  # the input manifest is not modified


def test_seeded_and_reproducible():
    m = _manifest()
    a = [s.split for s in assign_splits(m, seed=1).samples]
    assert a == [s.split for s in assign_splits(m, seed=1).samples]
    assert a != [s.split for s in assign_splits(m, seed=2).samples]


def test_ungrouped_samples_and_rare_class():
    samples = [Sample(f"/x/{i}.png", {"label": "rare" if i < 3 else "common"}) for i in range(200)]
    out = assign_splits(Manifest(samples, {"label": ["common", "rare"]}), (0.8, 0.2, 0.0))
    sizes = Counter(s.split for s in out.samples)
    assert sizes["test"] == 0 and abs(sizes["train"] - 160) <= 10


def test_given_splits_are_kept_and_patients_follow_them():
    m = _manifest(40)
    m.samples[0].split = "val"
    m.samples[1].split = "train" if m.samples[1].patient_id != m.samples[0].patient_id else "val"
    out = assign_splits(m)
    assert out.samples[0].split == "val" and out.samples[1].split == m.samples[1].split
    same = [s.split for s in out.samples if s.patient_id == m.samples[0].patient_id]
    assert set(same) == {"val"}
    fresh = assign_splits(m, keep_given=False, seed=5)
    assert fresh.origin["splits"]["assigned"] == len(m)


def test_write_read_round_trip(tmp_path):
    m = _manifest()
    path = tmp_path / "splits.csv"
    first = ensure_splits(m, path, seed=7)
    assert path.exists() and "p0/img0.dcm" in path.read_text()  # keys relative to the root
    again = ensure_splits(m, path, seed=99)  # the file wins over a different seed
    assert [s.split for s in again.samples] == [s.split for s in first.samples]
    moved = Manifest([Sample(s.source.replace("/data", "/elsewhere"), s.labels, s.patient_id)
                      for s in m.samples], m.tasks, root="/elsewhere")
    assert [s.split for s in read_splits(moved, path).samples] == [s.split for s in first.samples]
    partial = Manifest(m.samples + [Sample("/data/new.dcm", {"label": "a"})], m.tasks, root="/data")
    with pytest.raises(InvalidConfigError):
        read_splits(partial, path)
    write_splits(first, tmp_path / "b.csv")
    assert (tmp_path / "b.csv").read_text() == path.read_text()


def test_fold_counts_and_bad_fractions():
    assert _fold_counts((0.7, 0.15, 0.15), 20) == [14, 3, 3]
    assert _fold_counts((0.8, 0.2, 0), 20) == [16, 4, 0]
    assert sum(_fold_counts((0.5, 0.3, 0.2), 7)) == 7
    with pytest.raises(InvalidConfigError):
        split_labels(np.array(["a"] * 10, object), np.arange(10).astype(object), (0.5, 0.5))


def test_chest_views_split_by_patient():
    need_data("chest_views", "labels.csv")
    out = assign_splits(load_shared("chest_views"), seed=0)
    assert all(len(v) == 1 for v in _patient_splits(out).values())
    lateral = Counter(s.split for s in out.samples if s.labels["view"] == "lateral")
    assert all(lateral[name] >= 1 for name in ("train", "val", "test")), lateral


def test_small_classes_with_shared_patients_still_split():
    """Fewer members per class than the default 20 folds must not make scikit-learn refuse."""
    strata = np.array(["a"] * 16 + ["b"] * 16, object)
    groups = np.array([str(i) for i in range(32)], object)
    groups[1] = groups[0]  # one patient with two images forces the grouped path
    names = split_labels(strata, groups)
    assert set(names) == {"train", "val", "test"}
    assert names[0] == names[1]
