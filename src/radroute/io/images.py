"""PNG / JPEG / TIFF files (8 and 16 bit, grey or colour, multi-page TIFF) via Pillow."""
from __future__ import annotations

import warnings
from numbers import Integral
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import ImageSequence, UnidentifiedImageError

from radroute.errors import CorruptPixelDataError, NotDicomError, TooLargeError, UnreadableError
from radroute.io.resize import resize
from radroute.io.types import Metadata
from radroute.io.windowing import check_window, percentile_window, to_grayscale

_FORMATS = {"PNG": "png", "JPEG": "jpeg", "MPO": "jpeg", "TIFF": "tiff"}


def _open(path: Path) -> PILImage.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            return PILImage.open(path)
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise TooLargeError(str(exc), path) from exc
    except UnidentifiedImageError as exc:
        raise NotDicomError("not an image format radroute reads", path) from exc
    except OSError as exc:
        raise UnreadableError(str(exc), path) from exc


def image_metadata(path: str | Path, img: PILImage.Image | None = None) -> Metadata:
    """Metadata of a PNG/JPEG/TIFF file (header only)."""
    path = Path(path)
    own = img is None
    img = _open(path) if own else img
    try:
        bits = 16 if img.mode.startswith("I;16") or img.mode in ("I", "F") else 8
        colour = img.mode not in ("L", "LA", "1", "I", "F") and not img.mode.startswith("I;16")
        return Metadata(
            path=str(path), rows=img.height, columns=img.width,
            frames=getattr(img, "n_frames", 1), bits_stored=bits,
            photometric="RGB" if colour else "MONOCHROME2",
            format=_FORMATS.get(img.format or "", (img.format or "").lower() or None),
        )
    finally:
        if own:
            img.close()


def _to_array(page: PILImage.Image) -> tuple[np.ndarray, bool]:
    """(float32 grey values, is 8-bit) of one page."""
    mode = page.mode
    if mode in ("L", "1"):
        return np.asarray(page.convert("L"), dtype=np.float32), True
    if mode.startswith("I;16") or mode in ("I", "F"):
        return np.asarray(page, dtype=np.float32), False
    if mode == "LA":
        return np.asarray(page.getchannel("L"), dtype=np.float32), True
    return to_grayscale(np.asarray(page.convert("RGB"))), True


def iter_image_file(path: str | Path, *, frames="all", size: int | None = None,
                    keep_aspect: bool = True, window: str = "auto") -> Iterator[tuple[int | None, np.ndarray, Metadata]]:
    """Yield (page index or None, [0, 1] pixels, metadata) for each wanted page."""
    check_window(window)
    path = Path(path)
    with _open(path) as img:
        meta = image_metadata(path, img)
        wanted = (range(meta.frames or 1) if frames == "all"
                  else [int(frames)] if isinstance(frames, Integral) else [int(f) for f in frames])
        for index, page in enumerate(ImageSequence.Iterator(img)):
            if index not in wanted:
                continue
            try:
                values, eight_bit = _to_array(page)
            except OSError as exc:  # truncated / damaged stream
                raise CorruptPixelDataError(str(exc), path) from exc
            if eight_bit and window != "percentile":
                pixels = resize(values, size, keep_aspect) / 255.0
            else:
                pixels = percentile_window(resize(values, size, keep_aspect))
            yield (index if (meta.frames or 1) > 1 else None), np.clip(pixels, 0, 1).astype(np.float32), meta
