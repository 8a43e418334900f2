"""Slice-by-slice anatomy profile of a CT volume (after Roth et al. 2015, Fig. 7).

``volume -> windowed, resized slice stack -> per-slice class probabilities -> median smoothing
along z -> decoding with the head-to-feet order of regions -> contiguous regions (superior ->
inferior) -> body part``.

>>> from radroute.inference.profile import profile_volume
>>> prof = profile_volume("ct.nii.gz")                  # the bundled ``ct-slice-region`` model
>>> [r.name for r in prof.regions], prof.body_part      # (['chest', 'abdomen', 'pelvis'], 'whole_body')
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from radroute.errors import NotAVolumeError, WrongModalityError
from radroute.vocab import DICOM_TERM_FOR

if TYPE_CHECKING:
    from radroute.data.preprocess import Preprocessing
    from radroute.inference.predictor import Predictor
    from radroute.io.types import Volume

DEFAULT_MODEL = "ct-slice-region"

#: head-to-feet order of the regions a slice model may output; the decoder keeps regions in it.
ANATOMICAL_ORDER: tuple[str, ...] = ("head", "neck", "chest", "abdomen", "pelvis", "lower_limb")

#: DICOM defined terms (PS3.16 CID 4031) for runs of adjacent regions, superior first.
COMBINED_TERMS: dict[tuple[str, ...], str] = {
    ("head", "neck"): "HEADNECK",
    ("neck", "chest"): "NECKCHEST",
    ("chest", "abdomen"): "CHESTABDOMEN",
    ("abdomen", "pelvis"): "ABDOMENPELVIS",
    ("chest", "abdomen", "pelvis"): "CHESTABDPELVIS",
    ("neck", "chest", "abdomen"): "NECKCHESTABDOMEN",
    ("neck", "chest", "abdomen", "pelvis"): "NECKCHESTABDPELV",
}
#: radroute body part of each combined term: two regions read as the vocabulary reads the term
#: (HEADNECK -> head, CHESTABDOMEN -> chest, ABDOMENPELVIS -> abdomen); three or more: whole_body.
COMBINED_BODY_PART: dict[str, str] = {
    "HEADNECK": "head", "NECKCHEST": "chest", "CHESTABDOMEN": "chest", "ABDOMENPELVIS": "abdomen",
}
#: regions shorter than this fraction of the scan are reported but do not make the body part
MIN_BODY_PART_FRACTION = 0.15


@dataclass
class Region:
    """A run of slices with one region label; ``slice_start``/``slice_end`` inclusive."""

    name: str
    slice_start: int
    slice_end: int
    z_start_mm: float | None
    z_end_mm: float | None

    @property
    def n_slices(self) -> int:
        return self.slice_end - self.slice_start + 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Profile:
    """Per-slice probabilities of a volume and the regions decoded from them."""

    model: str
    model_version: str | None
    classes: list[str]
    #: raw model probabilities, (n_slices, n_classes), slices superior -> inferior
    probabilities: np.ndarray
    #: after median smoothing along z
    smoothed: np.ndarray
    #: decoded class index of each slice
    labels: np.ndarray
    z_mm: np.ndarray
    regions: list[Region]
    body_part_examined: str | None
    body_part: str
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        """The ``summary.json`` record."""
        return {
            "model": self.model,
            "model_version": self.model_version,
            "regions": [r.to_dict() for r in self.regions],
            "body_part_examined": self.body_part_examined,
            "body_part": self.body_part,
            "classes": list(self.classes),
            "n_slices": int(len(self.labels)),
            "warnings": list(self.warnings),
        }

    def write_csv(self, path: str | Path) -> None:
        """``profile.csv``: ``slice, z_mm``, one probability column per class, then ``region``."""
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["slice", "z_mm", *self.classes, "region"])
            for i, (z, p, k) in enumerate(zip(self.z_mm, self.probabilities, self.labels)):
                w.writerow([i, _mm(z), *(f"{v:.4f}" for v in p), self.classes[int(k)]])


def _mm(z) -> float | None:
    return None if z is None or not np.isfinite(z) else round(float(z), 2)


# ---- modality -------------------------------------------------------------------------------
def check_ct(volume: "Volume", modality: str | None = None) -> None:
    """Raise :class:`WrongModalityError` unless ``volume`` is CT.

    ``modality`` (e.g. ``"CT"`` from ``--modality``) overrides everything. Otherwise the DICOM
    Modality tag decides; a volume without one (NIfTI) must look like HU: CT always has air or
    lung near -1000 HU, so its 0.5th percentile is below -500 (MR intensities are >= ~0).
    """
    hint = "pass --modality CT to profile it anyway"
    if modality:
        if modality.upper() != "CT":
            raise WrongModalityError(f"modality {modality.upper()}: the slice profile is for CT only",
                                     volume.meta.path)
        return
    tag = (volume.meta.modality or "").upper() or None
    if tag is not None:
        if tag != "CT":
            raise WrongModalityError(f"modality {tag}: the slice profile is for CT only; {hint}",
                                     volume.meta.path)
        return
    sample = volume.voxels[:, ::4, ::4]
    low = float(np.percentile(sample, 0.5))
    if low > -500:
        raise WrongModalityError(
            f"the volume has no Modality tag and does not look like CT in HU (0.5th percentile "
            f"{low:.0f}, CT has air at -1000); {hint}", volume.meta.path)


# ---- model input ----------------------------------------------------------------------------
def slices_to_input(hu: np.ndarray, spacing_yx: tuple[float, float],
                    preprocessing: "Preprocessing") -> np.ndarray:
    """HU slices (N, Y, X) -> model input (N, 1, S, S): window, resize the whole stack at once,
    pad, normalise, as :class:`~radroute.data.preprocess.Preprocessing` does one image at a time.

    Non-square pixels are resized to their physical aspect ratio. The antialiased bilinear
    resize of ``torch.nn.functional.interpolate`` follows Pillow's, which the training used.
    """
    import torch
    import torch.nn.functional as F

    from radroute.io.windowing import WINDOW_PRESETS, window_array

    window = preprocessing.window if preprocessing.window in WINDOW_PRESETS else "soft_tissue"
    x01 = torch.from_numpy(np.ascontiguousarray(window_array(hu, window), dtype=np.float32))[:, None]
    n, _, h, w = x01.shape
    s = preprocessing.size
    if preprocessing.keep_aspect:
        dy, dx = (float(v) if v and v > 0 else 1.0 for v in spacing_yx)
        ph, pw = h * dy, w * dx
        scale = s / max(ph, pw)
        nh, nw = max(1, min(s, round(ph * scale))), max(1, min(s, round(pw * scale)))
    else:
        nh, nw = s, s
    if (nh, nw) != (h, w):
        x01 = F.interpolate(x01, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    out = torch.zeros((n, 1, s, s), dtype=torch.float32)
    top, left = (s - nh) // 2, (s - nw) // 2
    out[:, :, top:top + nh, left:left + nw] = x01.clamp_(0.0, 1.0)
    return ((out - preprocessing.mean) / preprocessing.std).numpy()


def slice_probabilities(predictor: "Predictor", volume: "Volume", task: str | None = None,
                        batch_size: int = 64, progress=None) -> np.ndarray:
    """Class probabilities of every slice, (n_slices, n_classes), in batches of ``batch_size``.

    ``progress(done, total)`` is called after each batch when given.
    """
    task = task or next(iter(predictor.package.tasks))
    spacing_yx = (volume.spacing[1], volume.spacing[2])
    n = volume.voxels.shape[0]
    out = []
    for start in range(0, n, batch_size):
        x = slices_to_input(volume.voxels[start:start + batch_size], spacing_yx, predictor.preprocessing)
        out.append(predictor.predict_arrays(x)[task])
        if progress is not None:
            progress(min(start + batch_size, n), n)
    return np.concatenate(out).astype(np.float32)


# ---- smoothing and decoding -----------------------------------------------------------------
def smooth_along_z(probs: np.ndarray, dz_mm: float, window_mm: float = 15.0) -> np.ndarray:
    """Median filter of each class's probability along z over about ``window_mm``, renormalised."""
    from scipy.ndimage import median_filter

    k = int(round(window_mm / dz_mm)) if dz_mm and dz_mm > 0 else 1
    k = max(1, k) | 1  # odd
    if k <= 1 or len(probs) < 3:
        return probs.copy()
    k = min(k, len(probs) - (1 - len(probs) % 2))
    smoothed = median_filter(probs, size=(k, 1), mode="nearest")
    return smoothed / np.clip(smoothed.sum(axis=1, keepdims=True), 1e-8, None)


def decode_regions(probs: np.ndarray, classes: list[str], ordered: bool = True,
                   switch_penalty: float = 4.0) -> np.ndarray:
    """Most likely label sequence (Viterbi) with a cost per region change.

    With ``ordered`` (and when every class has a place in :data:`ANATOMICAL_ORDER`) a change may
    only go from a region to one further down the body, so the regions of a volume ordered
    superior -> inferior come out in anatomical order (no chest below the abdomen).
    """
    n, c = probs.shape
    logp = np.log(np.clip(probs, 1e-6, 1.0))
    rank = [ANATOMICAL_ORDER.index(k) if k in ANATOMICAL_ORDER else None for k in classes]
    ordered = ordered and None not in rank
    trans = np.full((c, c), -switch_penalty)
    np.fill_diagonal(trans, 0.0)
    if ordered:
        for i in range(c):
            for j in range(c):
                if rank[j] < rank[i]:
                    trans[i, j] = -np.inf
    score = logp[0].copy()
    back = np.zeros((n, c), dtype=np.int64)
    for t in range(1, n):
        cand = score[:, None] + trans           # from i (rows) to j (columns)
        back[t] = np.argmax(cand, axis=0)
        score = cand[back[t], np.arange(c)] + logp[t]
    labels = np.empty(n, dtype=np.int64)
    labels[-1] = int(np.argmax(score))
    for t in range(n - 1, 0, -1):
        labels[t - 1] = back[t, labels[t]]
    return labels


def regions_from_labels(labels: np.ndarray, classes: list[str], z_mm: np.ndarray | None) -> list[Region]:
    """Runs of equal labels -> :class:`Region` list, in slice order (superior -> inferior)."""
    regions: list[Region] = []
    start = 0
    for i in range(1, len(labels) + 1):
        if i == len(labels) or labels[i] != labels[start]:
            z0 = _mm(z_mm[start]) if z_mm is not None else None
            z1 = _mm(z_mm[i - 1]) if z_mm is not None else None
            regions.append(Region(classes[int(labels[start])], start, i - 1, z0, z1))
            start = i
    return regions


def body_part_of(regions: list[Region], n_slices: int,
                 min_fraction: float = MIN_BODY_PART_FRACTION) -> tuple[str | None, str]:
    """``(body_part_examined, body_part)`` of a profile.

    Only regions covering at least ``min_fraction`` of the slices count (the lung bases at the top
    of an abdominal CT do not make it a chest CT). One region: its DICOM term and itself. Adjacent
    regions: the combined DICOM term (``ABDOMENPELVIS`` ...); the body part of two is what
    radroute's vocabulary makes of that term (HEADNECK -> head, CHESTABDOMEN -> chest,
    ABDOMENPELVIS -> abdomen), three or more regions are ``whole_body``. Other combinations:
    no DICOM term, and the region with most slices (``whole_body`` from three on).
    """
    counts: dict[str, int] = {}
    for r in regions:
        counts[r.name] = counts.get(r.name, 0) + r.n_slices
    if not counts:
        return None, "unknown"
    keep = [name for name in counts if counts[name] >= min_fraction * n_slices]
    if not keep:
        keep = [max(counts, key=counts.get)]
    order = {name: i for i, name in enumerate(ANATOMICAL_ORDER)}
    keep.sort(key=lambda name: order.get(name, len(order)))
    if len(keep) == 1:
        name = keep[0]
        return DICOM_TERM_FOR.get(name), name
    term = COMBINED_TERMS.get(tuple(keep))
    if len(keep) >= 3:
        if keep[0] == "head" and "pelvis" in keep:
            term = "WHOLEBODY"
        return term, "whole_body"
    if term is not None:
        return term, COMBINED_BODY_PART[term]
    return None, max(keep, key=counts.get)


# ---- the whole pipeline ---------------------------------------------------------------------
def profile_volume(volume: "Volume | str | Path", model: "str | Path | Predictor" = DEFAULT_MODEL, *,
                   modality: str | None = None, ordered: bool = True, window_mm: float = 15.0,
                   switch_penalty: float = 4.0, batch_size: int = 64, backend: str = "torch",
                   threads: int | None = None, progress=None) -> Profile:
    """Profile a CT volume (a :class:`Volume`, NIfTI file or DICOM series folder).

    ``model`` is a package name/path or a loaded :class:`Predictor`; ``modality`` overrides the
    CT check (see :func:`check_ct`). Raises :class:`WrongModalityError` for non-CT volumes and
    :class:`NotAVolumeError` for stacks that are not axial.
    """
    from radroute.inference.predictor import Predictor, load_predictor
    from radroute.io import read_volume

    if not hasattr(volume, "voxels"):
        volume = read_volume(volume)
    check_ct(volume, modality)
    if volume.voxels.ndim != 3 or volume.voxels.shape[0] < 1:
        raise NotAVolumeError(f"expected a 3-D volume, got shape {volume.voxels.shape}", volume.meta.path)
    predictor = model if isinstance(model, Predictor) else load_predictor(model, backend=backend, threads=threads)
    task = next(iter(predictor.package.tasks))
    classes = list(predictor.package.tasks[task])
    warnings: list[str] = []
    z_mm = np.asarray(volume.z_mm, dtype=np.float64) if volume.z_mm is not None else None
    if z_mm is not None and len(z_mm) > 1 and np.ptp(z_mm) < 1e-3:
        warnings.append("slice positions do not change along the patient z axis: "
                        "the stack is not axial, regions are in slice order")
    probs = slice_probabilities(predictor, volume, task, batch_size, progress)
    smoothed = smooth_along_z(probs, float(volume.spacing[0]), window_mm)
    labels = decode_regions(smoothed, classes, ordered=ordered, switch_penalty=switch_penalty)
    regions = regions_from_labels(labels, classes, z_mm)
    term, part = body_part_of(regions, len(labels))
    if float(np.mean(probs.max(axis=1))) < 0.5:
        warnings.append("the model is unsure on most slices (mean top probability < 0.5)")
    return Profile(model=predictor.name, model_version=predictor.version, classes=classes,
                   probabilities=probs, smoothed=smoothed, labels=labels,
                   z_mm=z_mm if z_mm is not None else np.arange(len(labels), dtype=np.float64),
                   regions=regions, body_part_examined=term, body_part=part, warnings=warnings)

