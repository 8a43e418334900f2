"""Decode every image once into a compact array at training resolution.

Compressed DICOM decodes at a few files per second, far slower than a CPU trains on small
images, so training reads ``images.npy`` (a memory map of ``(N, S, S)`` uint8 or float16 in
[0, 1], i.e. :meth:`Preprocessing.square` output before normalisation) instead of the files.

The cache folder is named by a hash of the image list (sources, frames, file sizes and times)
and of the preprocessing fields that change pixels (size, keep_aspect, window), so a different
dataset or recipe never reuses a stale cache, while relabelling or re-splitting does reuse it.
Unreadable files do not stop the build: they are recorded in ``meta.json`` (``errors``) and
left out of the datasets.
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from radroute.data.manifest import NPZ_PREFIX, Manifest
from radroute.data.preprocess import Preprocessing
from radroute.data.sources import load_npz_images
from radroute.errors import InvalidConfigError, error_dict

if TYPE_CHECKING:
    from radroute.data.dataset import CachedDataset

CACHE_VERSION = 1
_DTYPES = {"uint8": np.uint8, "float16": np.float16}


def default_cache_dir() -> Path:
    """``$RADROUTE_CACHE`` or ``~/.cache/radroute/preprocessed``."""
    env = os.environ.get("RADROUTE_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "radroute" / "preprocessed"


def cache_key(manifest: Manifest, pre: Preprocessing, dtype: str = "uint8") -> str:
    """Hash of what determines the cached pixels (not labels, splits or normalisation)."""
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, dtype, pre.size, pre.keep_aspect, pre.window, manifest.npz]).encode())
    if manifest.npz:
        st = os.stat(manifest.npz)
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    for s in manifest.samples:
        stamp = ""
        if not s.source.startswith(NPZ_PREFIX):
            try:
                st = os.stat(s.source)
                stamp = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                stamp = "missing"
        h.update(f"{s.source}\0{s.frame}\0{stamp}\n".encode())
    return h.hexdigest()[:20]


def _to_storage(sq: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint8":
        return np.rint(sq * 255.0).astype(np.uint8)
    return sq.astype(np.float16)


def _decode_chunk(pre_dict: dict, dtype: str, items: Sequence[tuple[int, str, int | None]]
                  ) -> list[tuple[int, np.ndarray | None, dict | None]]:
    """Worker: read + square a few files; an error becomes a record, never an exception."""
    pre = Preprocessing.from_dict(pre_dict)
    out = []
    for index, source, frame in items:
        try:
            image = pre.read(source, frame=frame)
            out.append((index, _to_storage(pre.square(image.pixels), dtype), None))
        except Exception as exc:  # noqa: BLE001 - one bad file never stops a build
            out.append((index, None, error_dict(exc)))
    return out


def _progress(enabled: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=Console(stderr=True), disable=not enabled,
                    transient=False)


class PreprocessedCache:
    """A built cache: ``images`` (N, S, S) memmap, ``ok`` mask, ``errors`` records."""

    def __init__(self, path: str | Path, manifest: Manifest, preprocessing: Preprocessing):
        self.path = Path(path)
        self.manifest = manifest
        self.preprocessing = preprocessing
        meta = json.loads((self.path / "meta.json").read_text())
        self.meta: dict[str, Any] = meta
        self.errors: list[dict] = meta["errors"]
        self.ok = np.load(self.path / "ok.npy")
        self._images: np.ndarray | None = None
        if len(self.ok) != len(manifest):
            raise InvalidConfigError(f"cache {self.path} holds {len(self.ok)} images, manifest has {len(manifest)}")

    @property
    def images(self) -> np.ndarray:
        """(N, S, S) uint8 or float16 in [0, 1] (memory-mapped; opened lazily per process)."""
        if self._images is None:
            self._images = np.load(self.path / "images.npy", mmap_mode="r")
        return self._images

    def __getstate__(self) -> dict:  # DataLoader workers reopen the memmap instead of copying it
        state = dict(self.__dict__)
        state["_images"] = None
        return state

    def __len__(self) -> int:
        return len(self.ok)

    def indices(self, split: str | None = None) -> np.ndarray:
        """Indices of the readable samples, of one split when given."""
        idx = np.flatnonzero(self.ok)
        if split is not None:
            idx = np.intersect1d(idx, self.manifest.split_indices(split))
        return idx

    def arrays(self, split: str | None = None, indices: Sequence[int] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """Model input ``x`` (N, 1, S, S) float32 normalised and labels ``y`` (N, n_tasks) int64."""
        idx = np.asarray(indices if indices is not None else self.indices(split), np.int64)
        x = self.preprocessing.normalise(np.asarray(self.images[idx]))[:, None]
        return x, self.manifest.label_matrix()[idx]

    def dataset(self, split: str | None = None, indices: Sequence[int] | None = None,
                augment: Callable | None = None) -> "CachedDataset":
        """A torch ``Dataset`` of ``(x, y)`` over the readable samples (of ``split``)."""
        from radroute.data.dataset import CachedDataset

        idx = self.indices(split) if indices is None else np.intersect1d(self.indices(), indices)
        return CachedDataset(self, idx, augment)


def build_cache(manifest: Manifest, pre: Preprocessing, cache_dir: str | Path | None = None, *,
                workers: int | None = None, dtype: str = "uint8", progress: bool = True,
                chunk: int = 16) -> PreprocessedCache:
    """Decode ``manifest`` through ``pre`` once and return the cache (reused when it exists).

    ``workers`` processes decode in parallel (default: CPU count, at most 8, or none for fewer
    than 64 files; ``0`` decodes in this process). A ``rich`` progress bar goes to stderr.
    """
    if dtype not in _DTYPES:
        raise InvalidConfigError(f"cache dtype must be one of {list(_DTYPES)}, not {dtype!r}")
    base = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    key = cache_key(manifest, pre, dtype)
    final = base / key
    if (final / "meta.json").exists():
        return PreprocessedCache(final, manifest, pre)
    tmp = base / f"{key}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    n, s = len(manifest), pre.size
    images = np.lib.format.open_memmap(tmp / "images.npy", mode="w+", dtype=_DTYPES[dtype], shape=(n, s, s))
    ok = np.zeros(n, bool)
    errors: list[dict] = []
    npz_idx = [i for i, x in enumerate(manifest.samples) if x.source.startswith(NPZ_PREFIX)]
    file_idx = [i for i, x in enumerate(manifest.samples) if not x.source.startswith(NPZ_PREFIX)]
    with _progress(progress) as bar:
        if npz_idx:
            task = bar.add_task("caching arrays", total=len(npz_idx))
            arrays = load_npz_images(manifest.npz, [manifest.samples[i].source for i in npz_idx])
            for pos, i in enumerate(npz_idx):
                images[i] = _to_storage(pre.square(arrays[pos]), dtype)
                ok[i] = True
                if pos % 1024 == 1023:
                    bar.advance(task, 1024)
            bar.update(task, completed=len(npz_idx))
        if file_idx:
            task = bar.add_task("decoding images", total=len(file_idx))
            items = [(i, manifest.samples[i].source, manifest.samples[i].frame) for i in file_idx]
            chunks = [items[k:k + chunk] for k in range(0, len(items), chunk)]
            if workers is None:  # a process pool costs ~1 s to start: not worth it for a few files
                workers = min(os.cpu_count() or 1, 8) if len(items) >= 64 else 0
            workers = min(workers, len(chunks))

            def store(results):
                for i, arr, err in results:
                    if err is None:
                        images[i], ok[i] = arr, True
                    else:
                        errors.append({"index": i, "source": manifest.samples[i].source,
                                       "frame": manifest.samples[i].frame, "error": err})
                bar.advance(task, len(results))

            if workers <= 1:
                for c in chunks:
                    store(_decode_chunk(pre.to_dict(), dtype, c))
            else:
                ctx = multiprocessing.get_context("forkserver" if os.name == "posix" else "spawn")
                with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                    futures = [pool.submit(_decode_chunk, pre.to_dict(), dtype, c) for c in chunks]
                    for fut in as_completed(futures):
                        store(fut.result())
    images.flush()
    del images
    np.save(tmp / "ok.npy", ok)
    errors.sort(key=lambda e: e["index"])
    meta = {"version": CACHE_VERSION, "key": key, "n": n, "size": s, "dtype": dtype,
            "preprocessing": pre.to_dict(), "n_ok": int(ok.sum()), "errors": errors,
            "origin": manifest.origin or None}
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        tmp.rename(final)
    except OSError:  # another process finished the same cache first
        shutil.rmtree(tmp, ignore_errors=True)
    return PreprocessedCache(final, manifest, pre)
