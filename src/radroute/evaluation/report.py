"""Evaluation reports: ``metrics.json`` + ``report.md`` + PNG figures in one folder.

>>> write_report("out/", {"view": TaskPredictions(y_true, probs, ["frontal", "lateral"])},
...              info={"model": "chest-view", "split": "val"})
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from radroute.evaluation.bootstrap import DEFAULT_RESAMPLES
from radroute.evaluation.metrics import evaluate_predictions, to_jsonable

METRICS_NAME = "metrics.json"
REPORT_NAME = "report.md"


@dataclass
class TaskPredictions:
    """What one task needs for its report: labels, probabilities, class names, optional features."""

    y_true: np.ndarray          # (N,) class indices
    probs: np.ndarray           # (N, K)
    class_names: Sequence[str]
    features: np.ndarray | None = None  # (M, D) penultimate-layer features, for t-SNE
    #: labels of the ``features`` rows when they are a subset; default: ``y_true`` row by row
    feature_labels: np.ndarray | None = None

    @property
    def labels_of_features(self) -> np.ndarray:
        return self.y_true if self.feature_labels is None else self.feature_labels


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "task"


def make_figures(task: str, pred: TaskPredictions, metrics: dict, out_dir: Path, seed: int = 0,
                 tsne: bool = True) -> dict[str, str]:
    """Write the task's PNGs into ``out_dir``; return ``{figure: file name}``."""
    from radroute.evaluation import plots

    slug = _slug(task)
    figures: dict[str, str] = {}

    def add(key: str, fn, *args, **kwargs) -> None:
        name = f"{slug}_{key}.png"
        fn(*args, out_dir / name, **kwargs)
        figures[key] = name

    if metrics["n"] == 0:
        return figures
    if any(v is not None for v in metrics["roc"].values()):
        add("roc", plots.plot_roc, metrics, title=f"{task}: ROC (one vs rest)")
    add("confusion", plots.plot_confusion, metrics, title=f"{task}: confusion matrix")
    add("reliability", plots.plot_reliability, metrics, title=f"{task}: reliability")
    if len(pred.class_names) == 2:
        cutoff = metrics["youden"]["cutoff"] if metrics["youden"] else None
        add("probability_histogram", plots.plot_probability_histogram, pred.y_true, pred.probs,
            list(pred.class_names), cutoff=cutoff, title=f"{task}: predicted probability")
    if tsne and pred.features is not None and len(pred.features) >= 5:
        add("tsne", plots.plot_tsne, pred.features, pred.labels_of_features, list(pred.class_names), seed=seed,
            title=f"{task}: t-SNE of features")
    return figures


# ---- Markdown -------------------------------------------------------------------------
def _pct(d: dict | None) -> str:
    """``97.30 % (95 % CI 96.10-98.20)`` or ``n/a``."""
    if not d or d.get("value") is None:
        return "n/a"
    text = f"{100 * d['value']:.2f} %"
    if d.get("ci_low") is not None:
        text += f" ({100 * d['ci_low']:.2f}-{100 * d['ci_high']:.2f})"
    return text


def _num(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    esc = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |",
             "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(v) for v in row) + " |" for row in rows]
    return lines


def task_markdown(task: str, m: dict, figures: dict[str, str]) -> list[str]:
    """The report section of one task."""
    lines = [f"## Task `{task}`", ""]
    lines.append(f"{m['n']} labelled images, {len(m['classes'])} classes. Intervals are 95 %: "
                 f"Clopper-Pearson (exact) for accuracy, error, sensitivity and specificity; "
                 f"percentile bootstrap ({m['bootstrap']['n_resamples']} resamples) for precision, "
                 f"recall and F1.")
    lines.append("")
    acc = m["accuracy"]
    rows = [
        ["accuracy", _pct(acc) + (f" ({acc['k']}/{acc['n']})" if acc["n"] else "")],
        ["error", _pct(m["error"])],
        ["macro precision", _pct(m["macro"]["precision"])],
        ["macro recall", _pct(m["macro"]["recall"])],
        ["macro F1", _pct(m["macro"]["f1"])],
        ["weighted F1", _pct(m["weighted"]["f1"])],
        ["mean one-vs-rest ROC AUC", _num(m["macro"]["auc"])],
        ["ECE (15 bins)", _num(m["calibration"]["ece"])],
        ["Brier score", _num(m["calibration"]["brier"])],
        ["negative log-likelihood", _num(m["calibration"]["nll"])],
    ]
    if m.get("features"):
        rows.append(["feature silhouette (by label)", _num(m["features"]["silhouette"])])
    lines += _table(["metric", "value (95 % CI)"], rows) + [""]

    lines += ["### Per class", ""]
    rows = [[name, r["support"], r["predicted"], _pct(r["precision"]), _pct(r["recall"]),
             _pct(r["f1"]), _num(r["auc"])] for name, r in m["per_class"].items()]
    lines += _table(["class", "support", "predicted", "precision", "recall", "F1", "AUC"], rows) + [""]

    y = m.get("youden")
    if y:
        lines += [f"### Youden cutoff (positive class `{y['positive_class']}`)", "",
                  f"Calling `{y['positive_class']}` when its probability is >= **{y['cutoff']:.4f}** "
                  f"maximises sensitivity + specificity - 1 (J = {y['youden_j']:.4f}): "
                  f"sensitivity {_pct(y['sensitivity'])}, specificity {_pct(y['specificity'])}.", ""]

    lines += ["### Confusion matrix (rows: true, columns: predicted)", ""]
    lines += _table(["true \\ predicted", *m["classes"]],
                    [[c, *row] for c, row in zip(m["classes"], m["confusion_matrix"])]) + [""]

    titles = {"roc": "ROC curves", "confusion": "Confusion matrix", "reliability": "Reliability diagram",
              "probability_histogram": "Predicted probability histogram", "tsne": "t-SNE of penultimate features"}
    if figures:
        lines += ["### Figures", ""]
        for key, name in figures.items():
            lines += [f"![{titles.get(key, key)}]({name})", ""]
    return lines


def report_markdown(results: dict[str, Any]) -> str:
    """The whole ``report.md`` from the ``metrics.json`` content."""
    info = results.get("info") or {}
    lines = ["# Evaluation report", ""]
    if info:
        def cell(v: Any) -> str:
            if v is None:
                return "n/a"
            return f"`{json.dumps(v)}`" if isinstance(v, (dict, list)) else str(v)

        lines += _table(["", ""], [[k, cell(v)] for k, v in info.items()]) + [""]
    for task, m in results["tasks"].items():
        lines += task_markdown(task, m, m.get("figures") or {})
    return "\n".join(lines).rstrip() + "\n"


def write_report(out_dir: str | Path, tasks: dict[str, TaskPredictions], info: dict[str, Any] | None = None,
                 seed: int = 0, n_resamples: int = DEFAULT_RESAMPLES, figures: bool = True,
                 tsne: bool = True) -> dict[str, Any]:
    """Evaluate every task, write figures, ``metrics.json`` and ``report.md``; return the metrics."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"info": to_jsonable(info or {}), "tasks": {}}
    for task, pred in tasks.items():
        m = evaluate_predictions(pred.y_true, pred.probs, pred.class_names, features=pred.features,
                                 seed=seed, n_resamples=n_resamples, feature_labels=pred.feature_labels)
        m["figures"] = make_figures(task, pred, m, out_dir, seed=seed, tsne=tsne) if figures else {}
        results["tasks"][task] = m
    (out_dir / METRICS_NAME).write_text(json.dumps(results, indent=1) + "\n")
    (out_dir / REPORT_NAME).write_text(report_markdown(results))
    return results
