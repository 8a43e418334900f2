"""Statistics checked against published values, closed forms and scikit-learn."""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import beta
from sklearn.metrics import (confusion_matrix, f1_score, precision_score, recall_score,
                             roc_auc_score)

from radroute.evaluation.metrics import (clopper_pearson, evaluate_predictions, one_vs_rest_auc,
                                         youden_cutoff)


def synthetic(n: int, k: int, seed: int = 0, strength: float = 1.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += strength
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True), logits


def test_clopper_pearson_rajkomar_1377_of_1377():
    low, high = clopper_pearson(1377, 1377)
    assert round(100 * low, 2) == 99.73  # Rajkomar 2016: 99.73-100 %
    assert high == 1.0
    assert low == pytest.approx(0.025 ** (1 / 1377), rel=1e-12)  # closed form when k = n


@pytest.mark.parametrize("k,n,low,high", [
    (0, 10, 0.0, 0.3084971),        # textbook: 1 - 0.025**(1/10)
    (5, 10, 0.1870860, 0.8129140),  # symmetric around 0.5
    (1, 20, 0.0012650, 0.2487328),
])
def test_clopper_pearson_known_values(k, n, low, high):
    lo, hi = clopper_pearson(k, n)
    assert lo == pytest.approx(low, abs=1e-6)
    assert hi == pytest.approx(high, abs=1e-6)


def test_clopper_pearson_matches_beta_quantiles_and_empty():
    for k, n in [(3, 17), (40, 41), (500, 1000)]:
        lo, hi = clopper_pearson(k, n)
        assert lo == pytest.approx(beta.ppf(0.025, k, n - k + 1), rel=1e-9)
        assert hi == pytest.approx(beta.ppf(0.975, k + 1, n - k), rel=1e-9)
    assert clopper_pearson(0, 0) == (None, None)


def test_accuracy_error_and_averages_equal_sklearn():
    y, p, _ = synthetic(1500, 4, seed=1)
    m = evaluate_predictions(y, p, ["a", "b", "c", "d"], n_resamples=2000)
    pred = p.argmax(1)
    acc = (pred == y).mean()
    assert m["accuracy"]["value"] == pytest.approx(acc)
    assert m["error"]["value"] == pytest.approx(1 - acc)
    assert (m["accuracy"]["ci_low"], m["accuracy"]["ci_high"]) == clopper_pearson(int((pred == y).sum()), 1500)
    for avg in ("macro", "weighted"):
        assert m[avg]["f1"]["value"] == pytest.approx(f1_score(y, pred, average=avg))
        assert m[avg]["precision"]["value"] == pytest.approx(precision_score(y, pred, average=avg))
        assert m[avg]["recall"]["value"] == pytest.approx(recall_score(y, pred, average=avg))
    per_f1 = f1_score(y, pred, average=None)
    assert [m["per_class"][c]["f1"]["value"] for c in "abcd"] == pytest.approx(per_f1)
    assert m["confusion_matrix"] == confusion_matrix(y, pred).tolist()
    assert [m["per_class"][c]["auc"] for c in "abcd"] == pytest.approx(
        [roc_auc_score(y == i, p[:, i]) for i in range(4)])
    assert m["macro"]["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="macro"))
    assert m["weighted"]["auc"] == pytest.approx(roc_auc_score(y, p, multi_class="ovr", average="weighted"))


def test_bootstrap_ci_contains_estimate_and_narrows_with_n():
    widths = []
    for n in (200, 3000):
        y, p, _ = synthetic(n, 3, seed=2)
        m = evaluate_predictions(y, p, ["x", "y", "z"], seed=0)
        for stat in ("precision", "recall", "f1"):
            d = m["macro"][stat]
            assert d["ci_low"] <= d["value"] <= d["ci_high"]
            for c in "xyz":
                d = m["per_class"][c][stat]
                assert d["ci_low"] <= d["value"] <= d["ci_high"]
        widths.append(m["macro"]["f1"]["ci_high"] - m["macro"]["f1"]["ci_low"])
    assert widths[1] < widths[0] / 2  # ~ 1/sqrt(n): 15x the data -> ~3.9x narrower
    # seeded: same seed, same interval
    y, p, _ = synthetic(300, 3)
    a = evaluate_predictions(y, p, ["x", "y", "z"], seed=5)["macro"]["f1"]
    b = evaluate_predictions(y, p, ["x", "y", "z"], seed=5)["macro"]["f1"]
    assert a == b


def test_bootstrap_matches_per_sample_resampling():
    """The multinomial shortcut gives the same distribution as resampling predictions."""
    y, p, _ = synthetic(400, 3, seed=3, strength=1.0)
    pred = p.argmax(1)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 400, size=(2000, 400))
    slow = np.array([f1_score(y[i], pred[i], average="macro") for i in idx[:300]])
    m = evaluate_predictions(y, p, ["x", "y", "z"], n_resamples=10_000)
    lo, hi = np.quantile(slow, [0.025, 0.975])
    assert m["macro"]["f1"]["ci_low"] == pytest.approx(lo, abs=0.015)
    assert m["macro"]["f1"]["ci_high"] == pytest.approx(hi, abs=0.015)


def test_undefined_values_are_null_and_json_serialisable():
    y = np.array([0, 0, 1, 1, 0])
    p = np.array([[.9, .1, 0], [.6, .4, 0], [.2, .8, 0], [.7, .3, 0], [.8, .1, .1]])
    m = evaluate_predictions(y, p, ["a", "b", "absent"], features=np.random.default_rng(0).normal(size=(5, 8)))
    json.dumps(m, allow_nan=False)
    c = m["per_class"]["absent"]
    assert c["auc"] is None and c["support"] == 0
    assert c["precision"]["value"] is None and c["recall"]["value"] is None and c["f1"]["value"] is None
    assert m["macro"]["auc"] == pytest.approx(np.mean(one_vs_rest_auc(y, p)[:2]))
    assert m["youden"] is None  # three classes
    assert m["features"]["dim"] == 8
    assert m["macro"]["f1"]["value"] == pytest.approx(f1_score(y, p.argmax(1), average="macro"))
    empty = evaluate_predictions(np.zeros(0, int), np.zeros((0, 2)), ["a", "b"])
    json.dumps(empty, allow_nan=False)
    assert empty["accuracy"]["value"] is None and empty["macro"]["auc"] is None


def test_youden_cutoff_constructed_example():
    # negatives 0.1..0.4, positives 0.35, 0.38, 0.6, 0.8, 0.9. Cutting at 0.6 gives
    # J = 3/5 - 0 = 0.6; cutting at 0.35 catches every positive and one negative: J = 1 - 1/4
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1])
    s = np.array([0.1, 0.2, 0.3, 0.4, 0.35, 0.38, 0.6, 0.8, 0.9])
    yd = youden_cutoff(y, s)
    assert yd["cutoff"] == pytest.approx(0.35)
    assert yd["sensitivity"]["value"] == 1.0
    assert yd["specificity"]["value"] == pytest.approx(0.75)
    assert yd["youden_j"] == pytest.approx(0.75)
    assert yd["counts"] == {"tp": 5, "fn": 0, "tn": 3, "fp": 1}
    # a second case where the high cutoff wins: negatives up to 0.55, one positive at 0.45
    y2 = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
    s2 = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.45, 0.6, 0.7, 0.9])
    yd2 = youden_cutoff(y2, s2)
    assert yd2["cutoff"] == pytest.approx(0.6)
    assert yd2["counts"] == {"tp": 3, "fn": 1, "tn": 6, "fp": 0}
    # through evaluate_predictions, for two classes
    m = evaluate_predictions(y, np.stack([1 - s, s], axis=1), ["neg", "pos"])
    assert m["youden"]["cutoff"] == pytest.approx(0.35)
    assert m["youden"]["positive_class"] == "pos"
    assert youden_cutoff(np.ones(4, int), np.linspace(0, 1, 4)) is None


def test_bad_shapes_raise_typed_error():
    from radroute.errors import InvalidConfigError

    with pytest.raises(InvalidConfigError):
        evaluate_predictions(np.array([0, 1]), np.ones((2, 3)) / 3, ["a", "b"])
    with pytest.raises(InvalidConfigError):
        evaluate_predictions(np.array([0, 5]), np.ones((2, 2)) / 2, ["a", "b"])
