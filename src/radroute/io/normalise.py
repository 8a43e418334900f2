"""One decoded DICOM frame -> float32 [0, 1]: modality LUT, resize, VOI window, MONOCHROME1."""
from __future__ import annotations

import numpy as np
from pydicom.dataset import Dataset
from pydicom.pixels.processing import apply_modality_lut, apply_voi

from radroute.io.resize import resize
from radroute.io.windowing import (
    WINDOW_PRESETS, apply_window, check_window, percentile_range, scale_range, to_grayscale,
)


def _first(value) -> float | None:
    """First value of a possibly multi-valued number (Window Center ``[40, 300]`` -> 40)."""
    if value is None or value == "":
        return None
    try:
        return float(value[0] if hasattr(value, "__len__") and not isinstance(value, str) else value)
    except (TypeError, ValueError, IndexError):
        return None


def frame_item(ds: Dataset, frame: int | None, sequence: str) -> Dataset | None:
    """The functional-group item ``sequence`` for ``frame`` (per-frame first, then shared)."""
    for group, index in (("PerFrameFunctionalGroupsSequence", frame or 0),
                         ("SharedFunctionalGroupsSequence", 0)):
        try:
            item = ds[group][index]
            if sequence in item:
                return item[sequence][0]
        except (KeyError, IndexError, TypeError):
            continue
    return None


def rescale(ds: Dataset, frame: int | None = None) -> tuple[float, float]:
    """(slope, intercept) of the linear modality transform, top level or functional groups."""
    source = ds if "RescaleSlope" in ds or "RescaleIntercept" in ds else frame_item(
        ds, frame, "PixelValueTransformationSequence") or ds
    return _first(source.get("RescaleSlope")) or 1.0, _first(source.get("RescaleIntercept")) or 0.0


def modality_lut(raw: np.ndarray, ds: Dataset, frame: int | None = None) -> np.ndarray:
    """Stored values -> modality values (HU for CT): Modality LUT Sequence or slope/intercept."""
    if "ModalityLUTSequence" in ds:  # pydicom decodes the LUT (US or OW, any endianness)
        return apply_modality_lut(raw, ds).astype(np.float32, copy=False)
    slope, intercept = rescale(ds, frame)
    values = raw.astype(np.float32)
    if slope != 1.0 or intercept != 0.0:
        values = values * np.float32(slope) + np.float32(intercept)
    return values


#: Lossy transfer syntaxes: decoded padding is only near Pixel Padding Value, not equal to it.
LOSSY_SYNTAXES = {
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.203",
}


def padding_mask(raw: np.ndarray, ds: Dataset) -> np.ndarray | None:
    """True where the stored value is Pixel Padding Value (up to Pixel Padding Range Limit).

    After lossy compression padding only lands near its value (and overshoots it): there, values
    beyond the padding value or within a tenth of the way to the image's median count too.
    """
    pad, limit = ds.get("PixelPaddingValue"), ds.get("PixelPaddingRangeLimit")
    if pad is None or isinstance(pad, bytes):
        return None
    lo = hi = int(pad)
    if limit is not None and not isinstance(limit, bytes):
        lo, hi = sorted((int(pad), int(limit)))
    meta = getattr(ds, "file_meta", None)
    if meta is not None and str(meta.get("TransferSyntaxUID", "")) in LOSSY_SYNTAXES:
        median = float(np.median(raw.reshape(-1)[:: max(1, raw.size // 4096)]))
        if median > hi:  # padding below the data: everything under the margin (overshoot too)
            return raw <= hi + 0.1 * (median - hi)
        if median < lo:
            return raw >= lo - 0.1 * (lo - median)
    if lo == hi:
        return raw == lo
    return (raw >= lo) & (raw <= hi)


def file_voi(ds: Dataset, frame: int | None) -> dict | None:
    """The file's own VOI: ``{"lut": True}`` or ``{"center", "width", "function"}``; ``None`` if none."""
    if "VOILUTSequence" in ds and len(ds.VOILUTSequence):
        return {"lut": True}
    source = ds if "WindowCenter" in ds else frame_item(ds, frame, "FrameVOILUTSequence")
    if source is None:
        return None
    center, width = _first(source.get("WindowCenter")), _first(source.get("WindowWidth"))
    if center is None or width is None or width <= 0:
        return None
    return {"center": center, "width": width, "function": str(source.get("VOILUTFunction") or "LINEAR")}


def apply_voi_lut(values: np.ndarray, ds: Dataset) -> np.ndarray:
    """Look modality values up in the first VOI LUT Sequence item, scaled to [0, 1]."""
    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2]) or 16
    out = apply_voi(np.rint(values).astype(np.int64), ds, index=0).astype(np.float32)
    return np.clip(out / float(2**bits - 1), 0.0, 1.0)


def normalise_frame(raw: np.ndarray, ds: Dataset, frame: int | None = None, *, size: int | None = None,
                    keep_aspect: bool = True, window: str = "auto") -> np.ndarray:
    """Decoded frame (H, W) or (H, W, 3 RGB) -> float32 (h, w) in [0, 1].

    Order: modality LUT (a linear rescale commutes with the area resize, so it is applied to the
    resized image), window range chosen on the full frame (padding excluded), resize, window
    applied, MONOCHROME1 inverted.
    """
    check_window(window)
    colour = raw.ndim == 3
    slope, intercept = 1.0, 0.0  # a linear modality transform commutes with the area resize:
    if colour:                   # it is applied after resizing, on far fewer pixels
        values, pad = to_grayscale(raw), None
    elif "ModalityLUTSequence" in ds:
        values, pad = modality_lut(raw, ds, frame), padding_mask(raw, ds)
    else:
        values, pad = raw, padding_mask(raw, ds)
        slope, intercept = rescale(ds, frame)
    voi = None
    if window in WINDOW_PRESETS and not colour and str(ds.get("Modality", "")).upper() == "CT":
        center, width = WINDOW_PRESETS[window]
        voi = {"center": center, "width": width, "function": "LINEAR_EXACT"}
    elif window != "percentile" and not colour:
        voi = file_voi(ds, frame)
    low_high = None
    if voi is None:
        low, high = (v * slope + intercept for v in percentile_range(values, pad))
        low_high = (min(low, high), max(low, high))
    values = resize(values, size, keep_aspect)
    if slope != 1.0 or intercept != 0.0:
        values = values * np.float32(slope) + np.float32(intercept)
    if voi is None:
        out = scale_range(values, *low_high)
    elif "lut" in voi:
        out = apply_voi_lut(values, ds)
    else:
        out = apply_window(values, voi["center"], voi["width"], voi["function"])
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        out = 1.0 - out
    return out.astype(np.float32, copy=False)
