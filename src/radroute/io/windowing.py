"""Intensity normalisation: VOI windows, percentile windows and CT presets, all into [0, 1]."""
from __future__ import annotations

import numpy as np

#: CT window presets (center, width) in HU.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "brain": (40.0, 80.0),
    "soft_tissue": (40.0, 400.0),
    "abdomen": (60.0, 400.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
}
#: every accepted value of the ``window`` argument.
WINDOW_CHOICES: tuple[str, ...] = ("auto", "percentile", *WINDOW_PRESETS)
PERCENTILES = (0.5, 99.5)
_MAX_SAMPLES = 1 << 16  # percentiles on a strided subsample: same answer, a fraction of the time


def check_window(window: str) -> str:
    """Validate a ``window`` argument (raises ``ValueError`` on an unknown name)."""
    if window not in WINDOW_CHOICES:
        raise ValueError(f"unknown window {window!r}; choose one of {', '.join(WINDOW_CHOICES)}")
    return window


def apply_window(values: np.ndarray, center: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 windowing of modality values into float32 [0, 1]."""
    values = np.asarray(values, dtype=np.float32)
    function = (function or "LINEAR").upper()
    width = float(width)
    if function == "SIGMOID":
        out = 1.0 / (1.0 + np.exp(-4.0 * (values - center) / max(width, 1e-6)))
    elif function == "LINEAR_EXACT":
        out = (values - (center - width / 2)) / max(width, 1e-6)
    else:  # LINEAR: the standard's -0.5 / -1 offsets
        width = max(width, 1.0)
        out = ((values - (center - 0.5)) / (width - 1.0 if width > 1 else 1.0)) + 0.5
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def percentile_range(values: np.ndarray, exclude: np.ndarray | None = None,
                     percentiles: tuple[float, float] = PERCENTILES) -> tuple[float, float]:
    """Robust (low, high) of ``values``, ignoring pixels where ``exclude`` is True and NaNs."""
    flat = np.asarray(values).reshape(-1)
    mask = None if exclude is None else np.asarray(exclude).reshape(-1)
    step = max(1, flat.size // _MAX_SAMPLES)
    flat = flat[::step]
    if mask is not None:
        flat = flat[~mask[::step]]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 1.0
    lo, hi = np.percentile(flat, percentiles)
    if hi <= lo:  # flat image: fall back to full range
        lo, hi = float(flat.min()), float(flat.max())
    return float(lo), float(hi)


def scale_range(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] linearly onto [0, 1] and clip (a constant image becomes all zeros)."""
    values = np.asarray(values, dtype=np.float32)
    if hi <= lo:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32, copy=False)


def percentile_window(values: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """The robust 0.5-99.5 % window of ``values`` into [0, 1]."""
    return scale_range(values, *percentile_range(values, exclude))


def window_array(hu: np.ndarray, preset: str = "soft_tissue") -> np.ndarray:
    """Window a HU array (any shape, e.g. a CT volume) with a preset name, or ``percentile``.

    >>> window_array(np.array([-1000.0, 40.0, 1000.0]), "soft_tissue").round(2).tolist()
    [0.0, 0.5, 1.0]
    """
    if preset in WINDOW_PRESETS:
        center, width = WINDOW_PRESETS[preset]
        return apply_window(hu, center, width, "LINEAR_EXACT")
    if preset in ("auto", "percentile"):
        return percentile_window(hu)
    raise ValueError(f"unknown window preset {preset!r}; choose one of {', '.join(WINDOW_CHOICES)}")


def to_grayscale(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an (H, W, 3) RGB array, float32."""
    rgb = np.asarray(rgb, dtype=np.float32)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
