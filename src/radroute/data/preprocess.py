"""The exact model input recipe, shared by training, evaluation, inference and the router.

A :class:`Preprocessing` turns a [0, 1] grayscale image of any size into the
``(1, size, size)`` float32 array a model consumes:

1. resize so the longer side is ``size`` (``keep_aspect=True``) or to exactly ``size x size``
   (``keep_aspect=False``): area averaging (Pillow BOX) when shrinking, antialiased bilinear when
   enlarging, on float32 -- the same rule and rounding as ``radroute.io.resize``, so resizing in
   ``read_image(size=...)`` and here give the same pixels;
2. pad with 0 (black), centred, to ``size x size``;
3. normalise: ``(x - mean) / std``.

Steps 1-2 are :meth:`Preprocessing.square`, step 3 is :meth:`Preprocessing.normalise`; the
preprocessing cache stores the output of step 2 so that the two halves can run apart.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image as PILImage

from radroute.errors import InvalidConfigError

if TYPE_CHECKING:
    from radroute.io.types import Image



def _as01(arr: np.ndarray) -> np.ndarray:
    """A float32 (H, W) array in [0, 1]; uint8 is read as /255, NaN becomes 0."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D (H, W) image, got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        a = np.nan_to_num(a, nan=0.0, posinf=1.0, neginf=0.0)
    return a


def resize01(arr: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize a float32 (H, W) image: area (BOX) when shrinking, bilinear when enlarging."""
    if arr.shape == (height, width):
        return arr
    shrinking = height * width < arr.shape[0] * arr.shape[1]
    method = PILImage.Resampling.BOX if shrinking else PILImage.Resampling.BILINEAR
    img = PILImage.fromarray(np.ascontiguousarray(arr, dtype=np.float32))
    return np.asarray(img.resize((width, height), method), dtype=np.float32)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes model input; stored in every model package."""

    size: int = 224              # model input is size x size, 1 channel
    keep_aspect: bool = True     # pad to square (True) or stretch (False)
    window: str = "auto"         # passed to radroute.io
    mean: float = 0.5
    std: float = 0.25

    def __post_init__(self) -> None:
        if int(self.size) != self.size or self.size < 1:
            raise InvalidConfigError(f"preprocessing size must be a positive integer, got {self.size!r}")
        if not self.std > 0:
            raise InvalidConfigError(f"preprocessing std must be > 0, got {self.std!r}")

    # ---- serialisation -------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "Preprocessing":
        """Build from a dict (unknown keys are ignored, missing ones take the defaults)."""
        d = dict(d or {})
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        try:
            if "size" in kw:
                kw["size"] = int(kw["size"])
            for k in ("mean", "std"):
                if k in kw:
                    kw[k] = float(kw[k])
            if "keep_aspect" in kw:
                kw["keep_aspect"] = bool(kw["keep_aspect"])
            if "window" in kw:
                kw["window"] = str(kw["window"])
        except (TypeError, ValueError) as exc:
            raise InvalidConfigError(f"invalid preprocessing {d!r}: {exc}") from exc
        return cls(**kw)

    # ---- the two halves ------------------------------------------------
    def square(self, arr01: np.ndarray) -> np.ndarray:
        """[0, 1] (H, W) -> (size, size) float32 in [0, 1]: resize + centred zero padding."""
        a = _as01(arr01)
        s = self.size
        h, w = a.shape
        if not self.keep_aspect:
            out = resize01(a, s, s)
        else:
            scale = s / max(h, w)
            nh, nw = max(1, min(s, round(h * scale))), max(1, min(s, round(w * scale)))
            a = resize01(a, nh, nw)
            if (nh, nw) == (s, s):
                out = a
            else:
                out = np.zeros((s, s), np.float32)
                top, left = (s - nh) // 2, (s - nw) // 2
                out[top:top + nh, left:left + nw] = a
        return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)  # always a new array

    def normalise(self, x01: np.ndarray) -> np.ndarray:
        """(…, size, size) in [0, 1] (float or uint8 /255) -> float32 ``(x - mean) / std``."""
        x = np.asarray(x01)
        x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32, copy=False)
        return (x - np.float32(self.mean)) * np.float32(1.0 / self.std)

    # ---- the contract --------------------------------------------------
    def from_array(self, arr01: np.ndarray) -> np.ndarray:
        """[0, 1] (H, W) -> (1, size, size) float32, normalised."""
        return self.normalise(self.square(arr01))[None]

    def from_image(self, image: "Image") -> np.ndarray:
        """A :class:`radroute.io.types.Image` -> (1, size, size) float32, normalised."""
        return self.from_array(image.pixels)

    def read(self, path: str | Path, frame: int | None = None) -> "Image":
        """Read a file the way this recipe wants it (size, aspect, window) with radroute.io."""
        from radroute.io import read_image  # late: io may be imported lazily by callers

        return read_image(path, frame=frame, size=self.size, keep_aspect=self.keep_aspect,
                          window=self.window)

    def load(self, path: str | Path, frame: int | None = None) -> np.ndarray:
        """Read a file with :func:`radroute.io.read_image` and return model input (1, S, S)."""
        return self.from_image(self.read(path, frame=frame))
