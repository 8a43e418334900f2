"""ECE and reliability bins on synthetic data with known calibration."""
from __future__ import annotations

import numpy as np
import pytest

from radroute.evaluation.calibration import (brier_score, expected_calibration_error,
                                             negative_log_likelihood, reliability_bins)


def calibrated(n: int, seed: int = 0, overconfident: bool = False):
    """Two classes; the true label is drawn from the predicted probabilities themselves."""
    rng = np.random.default_rng(seed)
    p1 = rng.uniform(0, 1, n)
    y = (rng.uniform(0, 1, n) < p1).astype(int)
    if overconfident:
        p1 = np.clip(0.5 + 1.8 * (p1 - 0.5), 0, 1)
    return y, np.stack([1 - p1, p1], axis=1)


def test_perfectly_calibrated_ece_near_zero():
    y, p = calibrated(50_000)
    assert expected_calibration_error(y, p) < 0.01


def test_overconfident_ece_large():
    y, p = calibrated(50_000, overconfident=True)
    assert expected_calibration_error(y, p) > 0.1


def test_ece_hand_computed():
    # bin (0.6, 0.667]: two at 0.65, one right -> |0.5 - 0.65|; bin (0.933, 1]: one at 1.0, right
    y = np.array([0, 1, 1])
    p = np.array([[0.65, 0.35], [0.65, 0.35], [0.0, 1.0]])
    assert expected_calibration_error(y, p) == pytest.approx((2 * 0.15 + 0) / 3)
    bins = reliability_bins(y, p)
    assert len(bins) == 15 and sum(b["count"] for b in bins) == 3
    assert bins[-1]["count"] == 1 and bins[-1]["accuracy"] == 1.0
    assert bins[0]["confidence"] is None


def test_brier_and_nll():
    y = np.array([0, 1])
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    assert brier_score(y, p) == pytest.approx((0 + 0.5) / 2)
    assert negative_log_likelihood(y, p) == pytest.approx(np.log(2) / 2)
