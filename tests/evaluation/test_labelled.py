"""The split a model is evaluated on, and matching a dataset's labels to a model's tasks and classes."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from radroute.errors import InvalidConfigError
from radroute.evaluation.labelled import align_labels, feature_subset, load_labelled, task_predictions
from radroute.models import ModelPackage
from tests.helpers import need_data

PRE = {"size": 28, "keep_aspect": True, "window": "auto", "mean": 0.5, "std": 0.25}


def test_split_file_recorded_by_training_is_reused(tmp_path):
    """Without ``splits``, the split file the package's training run wrote decides what 'val' is."""
    from radroute.data import ensure_splits, load_source

    organ_npz = need_data("organamnist", "organamnist_trainval.npz")
    data = np.load(organ_npz)
    names = json.loads((organ_npz.parent / "classes.json").read_text())
    classes = [names[str(i)] for i in range(len(names))]
    folder = tmp_path / "pngs"
    folder.mkdir()
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "organ", "patient_id"])
        # two organs, 40 images each (the splitter wants >= 20 members per class), 3 per patient
        rows = np.concatenate([np.flatnonzero(data["val_labels"][:, 0] == k)[:40] for k in (3, 6)])
        for n, i in enumerate(rows):
            Image.fromarray(data["val_images"][i]).save(folder / f"{i}.png")
            w.writerow([f"{i}.png", classes[data["val_labels"][i, 0]], f"p{n // 3}"])
    split_file = tmp_path / "run" / "splits.csv"
    written = ensure_splits(load_source(folder / "labels.csv"), split_file, seed=7)
    expected = {Path(s.source).name for s in written.samples if s.split == "val"}
    package = ModelPackage(name="x", architecture="roth2015", tasks={"organ": classes}, preprocessing=PRE,
                           training={"data": {"split_file": str(split_file), "source": str(folder / "labels.csv")}})
    notes: list[str] = []
    got = load_labelled(str(folder / "labels.csv"), split="val", splits=None, package=package, log=notes.append)
    assert {Path(s.source).name for s in got.samples} == expected and expected
    assert notes == [f"splits from {split_file}"]
    default = load_labelled(str(folder / "labels.csv"), split="val", splits=None, package=None, log=notes.append)
    assert {Path(s.source).name for s in default.samples} != expected  # seed 0 differs from seed 7
    assert notes[-1].startswith("note: samples without a split were assigned one")
    # a package trained on other data does not impose its split file
    package.training["data"]["source"] = "chest_views"
    other = load_labelled(str(folder / "labels.csv"), split="val", splits=None, package=package)
    assert {s.source for s in other.samples} == {s.source for s in default.samples}
    with pytest.raises(InvalidConfigError, match="no samples in split 'test'"):
        load_labelled(str(organ_npz), split="test", task="organ")


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
