"""Thumbnails of spooled instances for the review page, decoded in child processes and cached.

The pixels come from the network (untrusted), so they are decoded away from the web service:
long-lived worker processes (a fresh interpreter each, never a fork of the server) run :func:`radroute.io.read_image` (the reader's own
windowing: VOI LUT / window tags, else a robust percentile window; MONOCHROME1 inverted), and a
decoder that crashes or hangs costs that worker (killed and started again), never the service.
PNGs are cached on disk by spool path and size; failures are remembered for the process.

TODO(read): switch to the reader's supervised decode primitive when it lands in ``lead``.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import queue
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

from radroute.errors import error_dict

#: seconds one thumbnail may take before its worker is killed
DECODE_TIMEOUT = 30.0


def render_png(path: str, size: int) -> bytes:
    """The PNG (8-bit grey, longer side ``size``) of the first frame of ``path``."""
    import numpy as np
    from PIL import Image as PILImage

    from radroute.io import read_image

    image = read_image(path, frame=0, size=size, keep_aspect=True, window="auto")
    pixels = np.clip(np.nan_to_num(image.pixels) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    PILImage.fromarray(pixels, "L").save(out, "PNG")
    return out.getvalue()


def _serve(stdin, stdout) -> None:
    """A worker's loop: one JSON request ``{"path", "size"}`` per line in; per request one JSON
    line ``{"ok": true, "bytes": n}`` and the PNG, or ``{"ok": false, "error": {...}}``, out."""
    for line in stdin:
        try:
            request = json.loads(line)
            png = render_png(request["path"], int(request["size"]))
            stdout.write(json.dumps({"ok": True, "bytes": len(png)}).encode() + b"\n" + png)
        except Exception as exc:  # noqa: BLE001 - every failure is this image's error
            stdout.write(json.dumps({"ok": False, "error": error_dict(exc)}).encode() + b"\n")
        stdout.flush()


class _Worker:
    """One decoding child process (``python -m radroute.web.thumbnails``), started on first use
    and again after it died or hung. Its stderr is discarded: decoder warnings may quote tags."""

    def __init__(self):
        self.proc: subprocess.Popen | None = None

    def _start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "radroute.web.thumbnails"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": _path()})

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            for f in (self.proc.stdin, self.proc.stdout):
                f.close()
            self.proc = None

    def _read(self, n: int, deadline: float) -> bytes | None:
        """``n`` bytes of the child's output, or ``None`` when it ends or the deadline passes."""
        fd, out = self.proc.stdout.fileno(), b""
        while len(out) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, n - len(out))
            if not chunk:
                return None
            out += chunk
        return out

    def _line(self, deadline: float) -> bytes | None:
        line = b""
        while not line.endswith(b"\n"):
            byte = self._read(1, deadline)
            if byte is None:
                return None
            line += byte
        return line

    def render(self, path: str, size: int, timeout: float) -> tuple[str, object]:
        if self.proc is None or self.proc.poll() is not None:
            self.stop()
            self._start()
        deadline = time.monotonic() + timeout
        try:
            self.proc.stdin.write(json.dumps({"path": path, "size": size}).encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            self.stop()
            return "error", {"type": "corrupt_pixel_data", "message": "the decoder crashed on this file"}
        header = self._line(deadline)
        answer = json.loads(header) if header else None
        png = self._read(answer["bytes"], deadline) if answer and answer["ok"] else None
        if answer is None or (answer["ok"] and png is None):
            timed_out = time.monotonic() >= deadline
            self.stop()
            return "error", {"type": "corrupt_pixel_data", "message": (
                f"decoding took longer than {timeout:g} s" if timed_out else "the decoder crashed on this file")}
        return ("ok", png) if answer["ok"] else ("error", answer["error"])


def _path() -> str:
    """``PYTHONPATH`` for the worker: this process's import path, so it runs the same radroute."""
    return os.pathsep.join(p for p in sys.path if p)


class ThumbnailError(Exception):
    """The image cannot be rendered; ``error`` is its ``{"type", "message"}``."""

    def __init__(self, error: dict):
        super().__init__(error.get("message"))
        self.error = error


class ThumbnailRenderer:
    """Rendered, cached thumbnails; ``workers`` child processes decode at the same time."""

    def __init__(self, cache_dir: str | Path, size: int = 256, workers: int = 1,
                 timeout: float = DECODE_TIMEOUT):
        self.dir = Path(cache_dir) / "thumbnails"
        self.size = size
        self.timeout = timeout
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._workers = [_Worker() for _ in range(max(1, workers))]
        for w in self._workers:
            self._idle.put(w)
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
        worker = self._idle.get()
        try:
            kind, value = worker.render(spool_path, self.size, self.timeout)
        finally:
            self._idle.put(worker)
        if kind != "ok":
            with self._lock:
                self._failed[spool_path] = value
            raise ThumbnailError(value)
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(value)
        os.replace(tmp, cached)
        return value

    def close(self) -> None:
        for w in self._workers:
            w.stop()


__all__ = ["DECODE_TIMEOUT", "ThumbnailError", "ThumbnailRenderer", "render_png"]


if __name__ == "__main__":  # the worker process
    _serve(sys.stdin.buffer, sys.stdout.buffer)
