from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from radroute.data.dataset import balanced_sampler, class_weights, oversample_indices


def test_balanced_sampler_draws_classes_equally():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    g = torch.Generator().manual_seed(0)
    drawn = Counter(labels[list(balanced_sampler(labels, num_samples=3000, generator=g))])
    for c in (0, 1, 2):
        assert abs(drawn[c] / 3000 - 1 / 3) < 0.05, drawn
    assert len(balanced_sampler(labels)) == 100


def test_missing_labels_get_the_mean_weight():
    w = class_weights(np.array([0, 0, 1, -1]))
    assert w.tolist()[:3] == [0.5, 0.5, 1.0] and abs(w[3] - 2 / 3) < 1e-12


def test_oversampling_keeps_every_sample_and_equalises():
    labels = np.array([0] * 10 + [1] * 3 + [-1])
    idx = oversample_indices(labels, seed=0)
    counts = Counter(labels[idx])
    assert counts[0] == counts[1] == 10 and counts[-1] == 1
    assert set(range(len(labels))) <= set(idx.tolist())
    assert not np.array_equal(idx, np.sort(idx))  # shuffled
    np.testing.assert_array_equal(idx, oversample_indices(labels, seed=0))
