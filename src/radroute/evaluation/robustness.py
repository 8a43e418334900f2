"""Robustness to image perturbations (Rajkomar et al. 2016, Fig 6).

Rajkomar showed that a view classifier keeps its answer when radiographs carry burned-in
text labels, are rotated, half occluded or cropped. Each perturbation here is a pure function
on a [0, 1] float image (H, W); :func:`run_robustness` runs a predictor over a set of images
under each one and reports how often the predicted label changes relative to the unperturbed
image (with an exact 95 % interval), and the accuracy under the perturbation when labels are
known.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import numpy as np

from radroute.evaluation.metrics import proportion, to_jsonable

Transform = Callable[[np.ndarray], np.ndarray]
HALVES = ("left", "right", "top", "bottom")
CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")


# ---- transforms ---------------------------------------------------------------------
def burn_text(image: np.ndarray, text: str, corner: str = "top_left", value: float = 1.0,
              height_fraction: float = 0.08) -> np.ndarray:
    """Draw ``text`` in a corner, as scanners and technologists burn labels into images.

    The glyphs are ``height_fraction`` of the image height (at least 7 px) and painted with
    intensity ``value`` (white by default), anti-aliased.
    """
    from PIL import Image as PILImage, ImageDraw, ImageFont

    if corner not in CORNERS:
        raise ValueError(f"corner must be one of {CORNERS}, got {corner!r}")
    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape
    font = ImageFont.load_default(size=max(7, int(round(h * height_fraction))))
    mask = PILImage.new("L", (w, h), 0)
    draw = ImageDraw.Draw(mask)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    margin = max(1, int(0.03 * min(h, w)))
    x = margin - left if corner.endswith("left") else w - margin - right
    y = margin - top if corner.startswith("top") else h - margin - bottom
    draw.text((x, y), text, fill=255, font=font)
    alpha = np.asarray(mask, dtype=np.float32) / 255.0
    return (img * (1 - alpha) + value * alpha).astype(np.float32)


def rotate(image: np.ndarray, degrees: float, fill: float = 0.0) -> np.ndarray:
    """Rotate counter-clockwise by ``degrees``; multiples of 90 are exact (``np.rot90``),
    other angles keep the shape, interpolate bilinearly and fill the corners with ``fill``."""
    img = np.asarray(image, dtype=np.float32)
    if float(degrees) % 90 == 0:
        return np.ascontiguousarray(np.rot90(img, k=int(degrees // 90) % 4))
    from scipy.ndimage import rotate as nd_rotate

    out = nd_rotate(img, float(degrees), reshape=False, order=1, mode="constant", cval=fill)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def occlude_half(image: np.ndarray, half: str, value: float = 0.0) -> np.ndarray:
    """Set the ``left``/``right``/``top``/``bottom`` half of the image to ``value``."""
    img = np.array(image, dtype=np.float32, copy=True)
    h, w = img.shape
    region = {"left": np.s_[:, : w // 2], "right": np.s_[:, w - w // 2:],
              "top": np.s_[: h // 2, :], "bottom": np.s_[h - h // 2:, :]}
    if half not in region:
        raise ValueError(f"half must be one of {HALVES}, got {half!r}")
    img[region[half]] = value
    return img


def center_crop(image: np.ndarray, fraction: float) -> np.ndarray:
    """Keep the central ``fraction`` of each side (0.8 keeps the central 80 % x 80 %)."""
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    img = np.asarray(image, dtype=np.float32)
    h, w = img.shape
    ch, cw = max(1, int(round(h * fraction))), max(1, int(round(w * fraction)))
    top, left = (h - ch) // 2, (w - cw) // 2
    return np.ascontiguousarray(img[top:top + ch, left:left + cw])


@dataclass(frozen=True)
class Perturbation:
    name: str
    group: str          # text, rotation, occlusion, crop
    description: str
    apply: Transform


def default_perturbations() -> list[Perturbation]:
    """The perturbations of Rajkomar 2016 Fig 6, in a fixed order."""
    p = [
        Perturbation("text_L", "text", 'burned-in "L" top left', lambda a: burn_text(a, "L", "top_left")),
        Perturbation("text_PORTABLE", "text", 'burned-in "PORTABLE" top right',
                     lambda a: burn_text(a, "PORTABLE", "top_right")),
        Perturbation("text_AP_SUPINE", "text", 'burned-in "AP SUPINE" bottom left',
                     lambda a: burn_text(a, "AP SUPINE", "bottom_left")),
    ]
    for deg in (90, 180, 270, 5, -5, 15, -15):
        way = "counter-clockwise" if deg > 0 else "clockwise"
        p.append(Perturbation(f"rotate_{deg}", "rotation", f"rotated {abs(deg)} degrees {way}",
                              lambda a, d=deg: rotate(a, d)))
    for half in HALVES:
        p.append(Perturbation(f"occlude_{half}", "occlusion", f"{half} half set to black",
                              lambda a, s=half: occlude_half(a, s)))
    for frac in (0.8, 0.6):
        p.append(Perturbation(f"crop_{int(frac * 100)}", "crop", f"central {int(frac * 100)} % kept",
                              lambda a, f=frac: center_crop(a, f)))
    return p


# ---- running ------------------------------------------------------------------------
PredictFn = Callable[[list[np.ndarray]], "dict[str, np.ndarray] | np.ndarray"]


def _predict_labels(predict: PredictFn, images: Sequence[np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    chunks: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(images), batch_size):
        out = predict(list(images[start:start + batch_size]))
        if not isinstance(out, dict):
            out = {"label": out}
        for task, probs in out.items():
            chunks.setdefault(task, []).append(np.asarray(probs).argmax(axis=1))
    return {task: np.concatenate(parts) for task, parts in chunks.items()}


def run_robustness(predict: PredictFn, images: Sequence[np.ndarray],
                   labels: dict[str, np.ndarray] | np.ndarray | None = None,
                   perturbations: Iterable[Perturbation] | None = None, batch_size: int = 64,
                   progress: Callable[[str], None] | None = None) -> dict:
    """Predict every image unperturbed and under each perturbation.

    ``predict`` maps a list of [0, 1] (H, W) images to probabilities, ``{task: (n, K)}`` or one
    (n, K) array (reported as task ``"label"``). ``labels`` are optional true class indices per
    task (``-1`` = unknown). Returns a JSON-serialisable dict: per task, the baseline accuracy
    and one row per perturbation with ``changed`` (fraction of images whose predicted label
    differs from the unperturbed prediction) and ``accuracy``, each with an exact 95 % CI.
    """
    perturbations = list(perturbations if perturbations is not None else default_perturbations())
    images = [np.asarray(a, dtype=np.float32) for a in images]
    base = _predict_labels(predict, images, batch_size)
    if labels is not None and not isinstance(labels, dict):
        labels = {next(iter(base)): np.asarray(labels)}
    labels = {t: np.asarray(v) for t, v in (labels or {}).items()}

    def accuracy(task: str, pred: np.ndarray) -> dict | None:
        if task not in labels:
            return None
        known = labels[task] >= 0
        return proportion(int((pred[known] == labels[task][known]).sum()), int(known.sum()))

    tasks = {t: {"n": len(images), "baseline_accuracy": accuracy(t, p), "perturbations": []}
             for t, p in base.items()}
    for pert in perturbations:
        if progress:
            progress(pert.name)
        pred = _predict_labels(predict, [pert.apply(a) for a in images], batch_size)
        for task, p in pred.items():
            changed = int((p != base[task]).sum())
            acc = accuracy(task, p)
            base_acc = tasks[task]["baseline_accuracy"]
            tasks[task]["perturbations"].append({
                "name": pert.name, "group": pert.group, "description": pert.description,
                "changed": proportion(changed, len(p)),
                "accuracy": acc,
                "accuracy_change": (acc["value"] - base_acc["value"])
                if acc and base_acc and acc["value"] is not None and base_acc["value"] is not None else None,
            })
    return to_jsonable({"n_images": len(images), "tasks": tasks})


def robustness_markdown(results: dict, info: dict | None = None) -> str:
    """A Markdown table per task: perturbation, label changed (95 % CI), accuracy."""
    def pct(d: dict | None) -> str:
        if not d or d.get("value") is None:
            return "n/a"
        return f"{100 * d['value']:.1f} % ({100 * d['ci_low']:.1f}-{100 * d['ci_high']:.1f})"

    lines = ["# Robustness report", "",
             "How often the predicted label changes when the image is perturbed (Rajkomar et al. 2016, "
             "Fig 6). Intervals: exact (Clopper-Pearson) 95 %.", ""]
    for key, value in (info or {}).items():
        lines.append(f"- {key}: {value}")
    if info:
        lines.append("")
    for task, r in results["tasks"].items():
        lines += [f"## Task `{task}` ({r['n']} images)", ""]
        if r["baseline_accuracy"]:
            lines += [f"Accuracy without perturbation: {pct(r['baseline_accuracy'])}", ""]
        lines += ["| perturbation | group | label changed | accuracy |", "|---|---|---|---|"]
        for row in r["perturbations"]:
            lines.append(f"| {row['description']} | {row['group']} | {pct(row['changed'])} | {pct(row['accuracy'])} |")
        lines.append("")
    return "\n".join(lines)
