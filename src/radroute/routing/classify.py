"""Classification for the router: micro-batched across incoming instances.

Callers :meth:`MicroBatcher.submit` a file path with a token; one worker thread gathers up to
``batch_size`` paths (waiting at most ``max_wait_ms`` for a batch to fill), runs them through
the model together and hands the (token, :class:`Prediction`) pairs back in one callback. Each
instance is classified on its first frame: one record per instance.
"""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol

from radroute.errors import error_dict
from radroute.inference.record import Prediction
from radroute.routing.logs import log_event


class Classifier(Protocol):
    """What the router needs from a model (a :class:`radroute.inference.Predictor` or
    ``AutoPredictor`` is one)."""

    name: str
    version: str | None

    @property
    def tasks(self) -> dict[str, list[str]]: ...

    @property
    def thresholds(self) -> dict[str, float]: ...

    @property
    def body_part_map(self) -> dict[str, dict[str, str]]: ...

    def predict(self, inputs: list[str], batch_size: int = 32, workers: int = 0,
                frames: str | int = "all") -> list[Prediction]: ...


def load_classifier(model: str, backend: str = "torch", threads: int = 2,
                    threshold: float | None = None) -> Classifier:
    """A predictor for a bundled name, a package path or ``auto`` (see ``radroute.inference.load_model``);
    ``threshold`` overrides the package's abstention thresholds."""
    from radroute.inference import load_model

    return load_model(model, backend=backend, threads=threads, threshold=threshold)


def classify_instances(classifier: Classifier, paths: list[str]) -> list[Prediction]:
    """One record per path, in order: each instance's first frame (a failed read gets its error)."""
    records = classifier.predict(paths, batch_size=max(1, len(paths)), frames=0)
    if [r.path for r in records] != list(paths):
        raise RuntimeError(f"the model returned {len(records)} records for {len(paths)} instances")
    return records


def aggregate(records: list[Prediction], classifier: Classifier) -> Prediction:
    """One series-level record from its instances' records, with the model's thresholds."""
    return Prediction.aggregate(records, classifier.thresholds, classifier.body_part_map)


class MicroBatcher:
    """Batches prediction requests from many threads into one model call.

    ``submit(path, token)`` queues a file; after each batch ``on_results([(token, record), ...])``
    is called once from the worker thread (so the caller can commit a batch's decisions in one
    journal transaction).
    """

    def __init__(self, classifier: Classifier, batch_size: int = 16, max_wait_ms: float = 50.0,
                 on_results: Callable[[list[tuple[Any, Prediction]]], None] | None = None):
        self.classifier = classifier
        self.batch_size = batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.on_results = on_results or (lambda results: None)
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._discard = False
        self.batches = 0
        self.images = 0
        self._thread = threading.Thread(target=self._run, name="radroute-classify", daemon=True)
        self._thread.start()

    def submit(self, path: str | Path, token: Any = None) -> None:
        self._queue.put((str(path), token))

    def close(self, drain: bool = True) -> None:
        """Stop the worker; with ``drain=False`` queued requests are dropped (their instances
        stay undecided in the journal and are classified after the next start)."""
        self._discard = not drain
        self._queue.put(None)
        self._thread.join(timeout=60)

    def _next_batch(self, first: tuple[str, Any]) -> tuple[list[tuple[str, Any]], bool]:
        """``first`` and what arrives before the batch is full or the wait is over; stop flag."""
        batch = [first]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.batch_size:
            try:
                nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return batch, False
            if nxt is None:
                return batch, True
            batch.append(nxt)
        return batch, False

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch, stop = self._next_batch(item)
            if self._discard:
                return
            try:
                self.on_results(list(zip([t for _, t in batch], self.predict([p for p, _ in batch]))))
            except Exception as exc:  # noqa: BLE001 - keep classifying; undecided ones resume later
                log_event("classify_callback_failed", level=40, error=error_dict(exc))
            if stop:
                return

    def predict(self, paths: list[str]) -> list[Prediction]:
        """Records for ``paths`` in order; a failing file gets an error record, never sinks the batch."""
        t0 = time.monotonic()
        try:
            records = classify_instances(self.classifier, paths)
        except Exception as exc:  # noqa: BLE001 - retry one by one
            log_event("classify_batch_failed", level=30, error=error_dict(exc), size=len(paths))
            records = [self._one(p) for p in paths]
        self.batches += 1
        self.images += len(paths)
        log_event("classified_batch", level=10, size=len(paths),
                  ms=round(1000 * (time.monotonic() - t0), 1))
        return records

    def _one(self, path: str) -> Prediction:
        try:
            return classify_instances(self.classifier, [path])[0]
        except Exception as exc:  # noqa: BLE001 - recorded per instance
            return Prediction.failed(path, error_dict(exc), model=self.classifier.name,
                                     model_version=self.classifier.version)
