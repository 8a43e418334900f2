"""Decode inputs into model-ready arrays, in parallel worker processes, in input order.

The main process runs the model while ``workers`` processes read and preprocess the next
files. At most ``workers * prefetch`` tasks are in flight, so memory stays flat however many
inputs there are (the input iterable itself is consumed lazily).
"""
from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from radroute.errors import RadrouteError, error_dict
from radroute.inference.policy import ModelPolicy
from radroute.io.types import Metadata


@dataclass
class ReadPlan:
    """How one model wants its input read: the :class:`Preprocessing` as a dict."""

    preprocessing: dict[str, Any]

    def read_args(self) -> tuple:
        p = self.preprocessing
        return (p.get("size"), p.get("keep_aspect", True), p.get("window", "auto"))


@dataclass
class DecodedImage:
    """One image of an input, ready for each model that may see it."""

    #: model key -> (C, S, S) float32, already through that model's Preprocessing
    arrays: dict[str, np.ndarray]
    frame: int | None = None
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None


@dataclass
class DecodedInput:
    """Everything one input (a file, an Image, an array) turned into."""

    path: str | None
    #: the models that may see it, first the one chosen from its tags (empty: none was chosen)
    models: list[str] = field(default_factory=list)
    images: list[DecodedImage] = field(default_factory=list)
    error: dict | None = None
    #: the input's tags (``None`` for arrays, and for files that failed before their header)
    meta: Metadata | None = None

    @property
    def model(self) -> str | None:
        """The model chosen for this input (the first stage)."""
        return self.models[0] if self.models else None


def _preprocessing(plan: dict):
    from radroute.data.preprocess import Preprocessing

    return Preprocessing.from_dict(plan)


def decode_path(path: str, plans: dict[str, dict], choose: ModelPolicy | None,
                frames: str | int) -> DecodedInput:
    """Read one file into model-ready arrays; never raises (errors go into the result).

    ``plans`` maps model key -> preprocessing dict. With a ``choose`` policy the models are
    picked from the file's tags (:meth:`ModelPolicy.stages_for`: the first model and those that
    may follow it) and the image is prepared for each; else the only plan is used. Models that
    read alike (size, aspect, window) share one decode.
    """
    from radroute.io import iter_images, read_header

    out = DecodedInput(path=path)
    try:
        if choose is None:
            out.models = [next(iter(plans))]
        elif len({ReadPlan(p).read_args() for p in plans.values()}) > 1:
            out.meta = read_header(path)
            out.models = choose.stages_for(out.meta)
        groups: dict[tuple, list[str]] = {}
        for key in out.models or list(plans)[:1]:
            groups.setdefault(ReadPlan(plans[key]).read_args(), []).append(key)
        for n, keys in enumerate(groups.values()):
            pp = _preprocessing(plans[keys[0]])
            for i, image in enumerate(iter_images(path, frames=frames, size=pp.size,
                                                  keep_aspect=pp.keep_aspect, window=pp.window)):
                if not out.models:  # every plan reads alike: choose from this image's tags
                    out.models = choose.stages_for(image.meta)
                    keys = out.models
                out.meta = out.meta or image.meta
                if n == 0:
                    out.images.append(DecodedImage({}, image.frame, image.meta.sop_instance_uid,
                                                   image.meta.series_instance_uid))
                for key in keys:
                    out.images[i].arrays[key] = _preprocessing(plans[key]).from_image(image)
        if not out.images:
            raise RadrouteError("the input yielded no image", path, code="no_pixel_data")
    except Exception as exc:  # one bad file never stops a batch
        out.images = []
        out.error = error_dict(exc)
    return out


def _decode_chunk(paths: list[str], plans: dict[str, dict], choose: ModelPolicy | None,
                  frames: str | int) -> list[DecodedInput]:
    return [decode_path(p, plans, choose, frames) for p in paths]


def default_workers() -> int:
    """Decode workers for this machine: one per core but one, which runs the model (at least 1)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores - 1)


def _isolated(ctx, path: str, plans: dict[str, dict], choose: ModelPolicy | None,
              frames: str | int) -> DecodedInput:
    """Decode one path in a fresh one-process pool: a decoder that crashes the process (a native
    library on a malformed file) becomes this input's error instead of the run's end."""
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
            return pool.submit(decode_path, path, plans, choose, frames).result()
    except BrokenProcessPool:
        return DecodedInput(path=path, error={"type": "corrupt_pixel_data",
                                              "message": "the decoder crashed on this file"})


def decode_paths(paths: Iterable[str | Path], plans: dict[str, dict], *, choose: ModelPolicy | None = None,
                 frames: str | int = "all", workers: int = 0, chunk: int = 8,
                 prefetch: int = 4) -> Iterator[DecodedInput]:
    """Decode ``paths`` lazily, in order; ``workers=0`` decodes in this process.

    At most ``workers * prefetch`` chunks of ``chunk`` paths are in flight, so memory does not
    grow with the number of inputs.
    """
    path_iter = (str(p) for p in paths)
    if workers <= 0:
        for p in path_iter:
            yield decode_path(p, plans, choose, frames)
        return
    # fork: workers only read files (no torch / ONNX Runtime calls), and start instantly.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else None)
    pending: deque[tuple[Future, list[str]]] = deque()
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
    try:
        def submit(batch: list[str]) -> None:
            pending.append((pool.submit(_decode_chunk, batch, plans, choose, frames), batch))

        def refill() -> None:
            while len(pending) < workers * prefetch:
                batch = list(islice(path_iter, chunk))
                if not batch:
                    return
                submit(batch)

        refill()
        while pending:
            future, batch = pending.popleft()
            try:
                results = future.result()
            except BrokenProcessPool:
                # a worker died: isolate this chunk's files, re-run the rest in a new pool
                pool.shutdown(wait=False, cancel_futures=True)
                pool = ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
                results = [_isolated(ctx, p, plans, choose, frames) for p in batch]
                retry = [b for _, b in pending]
                pending.clear()
                for b in retry:
                    submit(b)
            refill()
            yield from results
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
