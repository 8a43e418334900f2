"""metrics.json, report.md and the PNG figures are written and consistent."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from radroute.evaluation.report import TaskPredictions, write_report


def _task(n, k, seed, dim=16):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 2.0
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    feats = rng.normal(size=(n, dim)) + 3 * np.eye(k, dim)[y]
    return y, p, feats


def test_write_report_two_tasks(tmp_path):
    y2, p2, f2 = _task(120, 2, 0)
    y4, p4, _ = _task(150, 4, 1)
    tasks = {"view": TaskPredictions(y2, p2, ["frontal", "lateral"], f2),
             "body part": TaskPredictions(y4, p4, ["head", "chest", "abdomen", "leg"])}  # no t-SNE
    res = write_report(tmp_path, tasks, info={"model": "test", "split": "val"}, n_resamples=1000)

    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk == json.loads(json.dumps(res))
    assert set(on_disk["tasks"]) == {"view", "body part"}
    view = on_disk["tasks"]["view"]
    assert set(view["figures"]) == {"roc", "confusion", "reliability", "probability_histogram", "tsne"}
    assert set(on_disk["tasks"]["body part"]["figures"]) == {"roc", "confusion", "reliability"}
    assert view["features"]["dim"] == 16 and on_disk["tasks"]["body part"]["features"] is None
    assert view["youden"] is not None and on_disk["tasks"]["body part"]["youden"] is None
    for task in on_disk["tasks"].values():
        for name in task["figures"].values():
            png = tmp_path / name
            assert png.is_file()
            with Image.open(png) as im:
                assert im.format == "PNG" and im.width > 200
            assert " " not in name

    md = (tmp_path / "report.md").read_text()
    assert "## Task `view`" in md and "## Task `body part`" in md
    assert "### Youden cutoff (positive class `lateral`)" in md
    assert f"![ROC curves]({view['figures']['roc']})" in md
    acc = view["accuracy"]
    assert f"({acc['k']}/{acc['n']})" in md
    rows = [line for line in md.splitlines() if line.startswith("| head |")]
    assert len(rows) == 2  # per-class table and confusion matrix row
    assert rows[1] == "| head | " + " | ".join(str(v) for v in on_disk["tasks"]["body part"]["confusion_matrix"][0]) + " |"


def test_write_report_without_figures_or_samples(tmp_path):
    res = write_report(tmp_path, {"t": TaskPredictions(np.zeros(0, int), np.zeros((0, 3)), "abc")},
                       figures=True)
    assert res["tasks"]["t"]["n"] == 0 and res["tasks"]["t"]["figures"] == {}
    assert "n/a" in (tmp_path / "report.md").read_text()
