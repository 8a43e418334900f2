"""Matching a dataset's labels to a model's tasks and classes."""
from __future__ import annotations

import numpy as np

from radroute.evaluation.labelled import align_labels, feature_subset, task_predictions


def test_align_by_task_name_class_name_and_case():
    dataset = {"view": ["Frontal", "lateral", "oblique"], "modality": ["CT", "MR"]}
    y = np.array([[0, 1], [1, -1], [2, 0], [-1, 0]])
    model = {"view": ["frontal", "lateral"], "region": ["head", "chest"]}
    a = align_labels(dataset, y, model)
    np.testing.assert_array_equal(a.labels["view"], [0, 1, -1, -1])  # "Frontal" matched case-insensitively
    np.testing.assert_array_equal(a.labels["region"], [-1, -1, -1, -1])
    assert a.source_task == {"view": "view", "region": None}
    assert a.unknown_classes == {"view": {"oblique": 1}}
    assert a.to_dict()["labelled"] == {"view": 2, "region": 0}


def test_single_tasks_pair_whatever_their_names():
    a = align_labels({"label": ["b", "a"]}, np.array([[0], [1], [-1]]), {"organ": ["a", "b"]})
    assert a.source_task == {"organ": "label"}
    np.testing.assert_array_equal(a.labels["organ"], [1, 0, -1])


def test_task_predictions_keep_labelled_rows_and_feature_subset():
    model = {"t": ["a", "b"]}
    a = align_labels({"t": ["a", "b"]}, np.array([[0], [-1], [1], [1]]), model)
    probs = {"t": np.array([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8], [0.6, 0.4]])}
    feats = np.arange(6, dtype=float).reshape(3, 2)  # features of rows 0, 1, 3
    tp = task_predictions(model, a, probs, feats, np.array([0, 1, 3]))["t"]
    np.testing.assert_array_equal(tp.y_true, [0, 1, 1])
    np.testing.assert_array_equal(tp.probs[:, 1], [0.1, 0.8, 0.4])
    np.testing.assert_array_equal(tp.features, feats[[0, 2]])   # row 1 is unlabelled
    np.testing.assert_array_equal(tp.feature_labels, [0, 1])
    rows = feature_subset(5000, 1000, seed=3)
    assert len(rows) == 1000 and np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(rows, feature_subset(5000, 1000, seed=3))
