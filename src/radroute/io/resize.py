"""Resizing float images: area averaging when shrinking, antialiased bilinear when enlarging."""
from __future__ import annotations

import numpy as np
from PIL import Image as PILImage


def target_shape(height: int, width: int, size: int, keep_aspect: bool = True) -> tuple[int, int]:
    """(H, W) after resizing: the longer side becomes ``size`` (keep_aspect) or exactly size x size."""
    if not keep_aspect:
        return size, size
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(values: np.ndarray, size: int | None, keep_aspect: bool = True) -> np.ndarray:
    """Resize a 2-D array to ``size`` (see :func:`target_shape`); ``None`` returns it unchanged."""
    values = np.asarray(values, dtype=np.float32)
    if size is None:
        return values
    height, width = target_shape(*values.shape[:2], size, keep_aspect)
    if (height, width) == values.shape[:2]:
        return values
    shrinking = height * width < values.shape[0] * values.shape[1]
    method = PILImage.Resampling.BOX if shrinking else PILImage.Resampling.BILINEAR
    out = PILImage.fromarray(np.ascontiguousarray(values), mode="F").resize((width, height), method)
    return np.asarray(out, dtype=np.float32)
