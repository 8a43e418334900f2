"""Thumbnails of spooled instances for the review page, decoded in isolated workers and cached.

The pixels come from the network (untrusted), so they are decoded the way every radroute
reader decodes untrusted pixels: in the supervised worker processes of
:class:`radroute.io.isolated.IsolatedPool`, with :func:`radroute.io.read_image` and the reader's
own windowing (VOI LUT / window tags, else a robust percentile window; MONOCHROME1 inverted).
A decoder that crashes or runs past the time limit costs its worker (replaced), never the web
service. PNGs are cached on disk by spool path and size; failures are remembered for the process.
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
from pathlib import Path

from radroute.errors import error_dict
from radroute.io.isolated import IsolatedPool

#: seconds one thumbnail may take before its worker is stopped
DECODE_TIMEOUT = 30.0


def render_png(path: str, size: int) -> bytes:
    """The PNG (8-bit grey, longer side ``size``) of the first frame of ``path``. Runs in a
    worker, whose decoder warnings are silenced: they may quote tag values."""
    import logging
    import warnings

    import numpy as np
    from PIL import Image as PILImage

    from radroute.io import read_image

    logging.getLogger("pydicom").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = read_image(path, frame=0, size=size, keep_aspect=True, window="auto")
    pixels = np.clip(np.nan_to_num(image.pixels) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels, "L").save(out, "PNG")
    return out.getvalue()


class ThumbnailError(Exception):
    """The image cannot be rendered; ``error`` is its ``{"type", "message"}``."""

    def __init__(self, error: dict):
        super().__init__(error.get("message"))
        self.error = error


class ThumbnailRenderer:
    """Rendered, cached thumbnails; ``workers`` isolated processes decode at the same time."""

    def __init__(self, cache_dir: str | Path, size: int = 256, workers: int = 1,
                 timeout: float = DECODE_TIMEOUT):
        self.dir = Path(cache_dir) / "thumbnails"
        self.size = size
        self.timeout = timeout
        self.pool = IsolatedPool(workers, timeout=timeout, name="radroute-thumbnail")
        self._failed: dict[str, dict] = {}
        self._lock = threading.Lock()

    def cache_path(self, spool_path: str) -> Path:
        key = hashlib.sha256(f"{spool_path}\0{self.size}".encode()).hexdigest()[:32]
        return self.dir / key[:2] / f"{key}.png"

    def png(self, spool_path: str) -> bytes:
        """The thumbnail's PNG bytes; raises :class:`ThumbnailError` when it cannot be made."""
        cached = self.cache_path(spool_path)
        if cached.is_file():
            return cached.read_bytes()
        with self._lock:
            failed = self._failed.get(spool_path)
        if failed is not None:
            raise ThumbnailError(failed)
        if not os.path.exists(spool_path):
            raise ThumbnailError({"type": "not_found", "message": "the spooled file is gone"})
        future = self.pool.submit_task(render_png, (spool_path, self.size), path=spool_path,
                                       timeout=self.timeout)
        try:
            png = future.result()
        except Exception as exc:  # noqa: BLE001 - the decoder's error, crash or timeout
            error = error_dict(exc)
            with self._lock:
                self._failed[spool_path] = error
            raise ThumbnailError(error) from exc
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(png)
        os.replace(tmp, cached)
        return png

    def close(self) -> None:
        self.pool.close()


__all__ = ["DECODE_TIMEOUT", "ThumbnailError", "ThumbnailRenderer", "render_png"]
