"""PNG figures for evaluation reports (matplotlib, Agg backend, no display needed).

* :func:`plot_roc` - one-vs-rest ROC curves (Rajkomar 2016 Fig 3, Roth 2015);
* :func:`plot_confusion` - the confusion matrix, counts and row-normalised colour;
* :func:`plot_probability_histogram` - two classes: histogram of the predicted probability of
  the positive class per true class, with the Youden cutoff (Rajkomar 2016 Fig 5);
* :func:`plot_tsne` - t-SNE of penultimate-layer features coloured by label (Roth 2015 Fig 6);
* :func:`plot_reliability` - reliability diagram with the ECE.

Every function takes the dict of :func:`radroute.evaluation.metrics.evaluate_predictions` (or
arrays) and a path, writes the PNG and returns the path.
"""
from __future__ import annotations

import inspect
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

#: t-SNE runs on at most this many points (Barnes-Hut t-SNE takes ~10-20 s for 1000 on 2 CPU cores)
TSNE_MAX_POINTS = 1000
#: optimisation steps (scikit-learn defaults to 1000): fewer, for speed; the layout settles early
TSNE_ITERATIONS = 500
DPI = 110


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _colours(n: int):
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def plot_roc(metrics: dict, path: str | Path, title: str = "ROC (one vs rest)") -> Path:
    """ROC curve of every class with a defined AUC."""
    fig, ax = plt.subplots(figsize=(5.5, 5))
    classes = metrics["classes"]
    curves = metrics["roc"]
    # for two classes both one-vs-rest curves are mirror images: draw the positive class only
    names = classes[1:] if len(classes) == 2 else classes
    for colour, name in zip(_colours(len(classes)), classes):
        if name not in names or curves.get(name) is None:
            continue
        auc = metrics["per_class"][name]["auc"]
        ax.plot(curves[name]["fpr"], curves[name]["tpr"], color=colour, lw=1.5,
                label=f"{name} (AUC {auc:.3f})")
    youden = metrics.get("youden")
    if youden:
        fpr = 1 - youden["specificity"]["value"]
        tpr = youden["sensitivity"]["value"]
        ax.plot([fpr], [tpr], "ko", label=f"Youden cutoff {youden['cutoff']:.3f}")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="false positive rate (1 - specificity)",
           ylabel="true positive rate (sensitivity)", title=title)
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def plot_confusion(metrics: dict, path: str | Path, title: str = "Confusion matrix") -> Path:
    """Counts in each cell; colour is the row-normalised fraction (recall per true class)."""
    cm = np.asarray(metrics["confusion_matrix"], dtype=float)
    classes = metrics["classes"]
    k = len(classes)
    rows = cm.sum(axis=1, keepdims=True)
    frac = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    side = min(2.5 + 0.55 * k, 14)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="fraction of true class")
    if k <= 30:
        for i in range(k):
            for j in range(k):
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if frac[i, j] > 0.5 else "black")
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(k), classes, fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _save(fig, path)


def plot_probability_histogram(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                               path: str | Path, cutoff: float | None = None,
                               title: str | None = None) -> Path:
    """Two classes: P(class 1) for the samples of each true class, with the cutoff line."""
    y_true = np.asarray(y_true)
    score = np.asarray(probs)[:, 1]
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0, 1, 41)
    for k, (name, colour) in enumerate(zip(class_names, _colours(2))):
        ax.hist(score[y_true == k], bins=bins, alpha=0.6, color=colour, label=f"true {name}")
    if cutoff is not None:
        ax.axvline(cutoff, color="k", ls="--", lw=1, label=f"cutoff {cutoff:.3f}")
    ax.set_yscale("log")
    ax.set(xlabel=f"predicted probability of {class_names[1]}", ylabel="images (log scale)",
           title=title or "Predicted probability by true class")
    ax.legend(fontsize=8)
    return _save(fig, path)


def tsne_embedding(features: np.ndarray, seed: int = 0, max_points: int = TSNE_MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """2-D t-SNE of at most ``max_points`` rows -> (embedding (m, 2), indices of the rows used)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    x = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.permutation(len(x))[:max_points])
    x = x[keep]
    if x.shape[1] > 50 and len(x) > 50:  # PCA to 50 dims first, as the t-SNE authors advise
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    perplexity = float(min(30.0, max(2.0, (len(x) - 1) / 3)))
    steps = "max_iter" if "max_iter" in inspect.signature(TSNE).parameters else "n_iter"  # sklearn < 1.5
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed, **{steps: TSNE_ITERATIONS})
    emb = tsne.fit_transform(x)
    return emb, keep


def plot_tsne(features: np.ndarray, y_true: np.ndarray, class_names: Sequence[str], path: str | Path,
              seed: int = 0, max_points: int = TSNE_MAX_POINTS, title: str = "t-SNE of penultimate features") -> Path:
    """Scatter of the t-SNE embedding of the features, coloured by true label."""
    emb, keep = tsne_embedding(features, seed, max_points)
    y = np.asarray(y_true)[keep]
    fig, ax = plt.subplots(figsize=(6.5, 5.5))
    for k, (name, colour) in enumerate(zip(class_names, _colours(len(class_names)))):
        mask = y == k
        if mask.any():
            ax.scatter(emb[mask, 0], emb[mask, 1], s=6, color=colour, label=name, alpha=0.8)
    ax.set(xticks=[], yticks=[], title=f"{title} ({len(keep)} images)")
    ax.legend(fontsize=7, markerscale=2, loc="best")
    return _save(fig, path)


def plot_reliability(metrics: dict, path: str | Path, title: str = "Reliability diagram") -> Path:
    """Accuracy vs mean confidence per bin, bar width = bin, with the diagonal and ECE."""
    cal = metrics["calibration"]
    bins = cal["bins"]
    fig, (ax, axn) = plt.subplots(2, 1, figsize=(5, 6), height_ratios=[3, 1], sharex=True)
    lows = np.array([b["low"] for b in bins])
    width = bins[0]["high"] - bins[0]["low"]
    acc = np.array([b["accuracy"] if b["accuracy"] is not None else np.nan for b in bins])
    conf = np.array([b["confidence"] if b["confidence"] is not None else np.nan for b in bins])
    ax.bar(lows, np.nan_to_num(acc), width=width, align="edge", edgecolor="k", label="accuracy")
    ax.bar(lows, np.nan_to_num(np.abs(conf - acc)), bottom=np.nan_to_num(np.fmin(acc, conf)),
           width=width, align="edge",
           color="salmon", alpha=0.5, edgecolor="r", label="gap to confidence")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ece = cal["ece"]
    ax.set(ylim=(0, 1), ylabel="accuracy",
           title=f"{title} (ECE {ece:.3f})" if ece is not None else title)
    ax.legend(fontsize=7, loc="upper left")
    axn.bar(lows, [b["count"] for b in bins], width=width, align="edge", color="grey")
    axn.set(xlim=(0, 1), xlabel="top-class confidence", ylabel="images")
    return _save(fig, path)


def plot_perturbation_examples(image: np.ndarray, perturbations, path: str | Path, columns: int = 6) -> Path:
    """One [0, 1] image unperturbed and under each perturbation (Rajkomar 2016 Fig 6)."""
    panels = [("original", np.asarray(image))] + [(p.name, p.apply(image)) for p in perturbations]
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.8 * columns, 1.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, arr) in zip(axes.ravel(), panels):
        ax.imshow(arr, cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=7)
    return _save(fig, path)
