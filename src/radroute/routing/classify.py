"""Classification for the router: one model, micro-batched across incoming instances.

Callers :meth:`MicroBatcher.submit` a file path with a token; one worker thread gathers up to
``batch_size`` paths (waiting at most ``max_wait_ms`` for a batch to fill), runs them through
the model together and hands the (token, prediction record) pairs back in one callback.
"""
from __future__ import annotations

import queue
import threading
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from radroute.errors import error_dict
from radroute.routing.logs import log_event


class Classifier(Protocol):
    """What the router needs from a model: a name, a version and ``predict(paths)``."""

    name: str
    version: str

    def predict(self, inputs: list[str], batch_size: int = 32) -> list[dict]: ...


def load_classifier(model: str, backend: str = "torch", threads: int = 2) -> Classifier:
    """A :class:`radroute.inference.Predictor` for a bundled name or package path."""
    from radroute.inference import load_model

    return load_model(model, backend=backend, threads=threads)


def model_tasks(classifier: Classifier) -> dict[str, list[str]]:
    package = getattr(classifier, "package", None)
    return dict(getattr(package, "tasks", {}) or {})


def error_record(path: str, classifier: Classifier | None, exc: BaseException) -> dict:
    """The prediction record for an image that could not be classified."""
    return {"path": path, "frame": None, "sop_instance_uid": None, "series_instance_uid": None,
            "model": getattr(classifier, "name", None), "model_version": getattr(classifier, "version", None),
            "predictions": None, "abstained": True, "body_part": None, "error": error_dict(exc)}


class MicroBatcher:
    """Batches prediction requests from many threads into one model call.

    ``submit(path, token)`` queues a file; after each batch ``on_results([(token, record), ...])``
    is called once from the worker thread (so the caller can commit a batch's decisions in one
    journal transaction).
    """

    def __init__(self, classifier: Classifier, batch_size: int = 16, max_wait_ms: float = 50.0,
                 on_results: Callable[[list[tuple[Any, dict]]], None] | None = None):
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

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            deadline = time.monotonic() + self.max_wait
            stop = False
            while len(batch) < self.batch_size:
                try:
                    nxt = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            if self._discard:
                return
            try:
                self.on_results(list(zip([t for _, t in batch], self.predict([p for p, _ in batch]))))
            except Exception as exc:  # noqa: BLE001 - keep classifying; undecided ones resume later
                log_event("classify_callback_failed", level=40, error=error_dict(exc))
            if stop:
                return

    def _predict(self, paths: list[str]) -> list[dict]:
        return predict_first_frames(self.classifier, paths)

    def _one_per_path(self, paths: list[str], records: list[dict]) -> list[dict]:
        return one_record_per_path(self.classifier, paths, records)

    def predict(self, paths: list[str]) -> list[dict]:
        """Records for ``paths`` in order; a failing file gets an error record, never sinks the batch."""
        t0 = time.monotonic()
        try:
            records = self._one_per_path(paths, self._predict(paths))
        except Exception as exc:  # noqa: BLE001 - retry one by one
            log_event("classify_batch_failed", level=30, error=error_dict(exc), size=len(paths))
            records = []
            for p in paths:
                try:
                    records.append(self._one_per_path([p], self._predict([p]))[0])
                except Exception as exc1:  # noqa: BLE001 - recorded per instance
                    records.append(error_record(p, self.classifier, exc1))
        self.batches += 1
        self.images += len(paths)
        log_event("classified_batch", level=10, size=len(paths),
                  ms=round(1000 * (time.monotonic() - t0), 1))
        return records


def predict_first_frames(classifier: Classifier, paths: list[str]) -> list[dict]:
    try:  # multi-frame files: classify the first frame only (one record per instance)
        return classifier.predict(paths, batch_size=len(paths), frames=0)
    except TypeError:
        return classifier.predict(paths, batch_size=len(paths))


def one_record_per_path(classifier: Classifier | None, paths: list[str], records: list[dict]) -> list[dict]:
    """Records in ``paths`` order, one per path (several frames' records are aggregated)."""
    if len(records) == len(paths) and all(r.get("path") in (p, None) for r, p in zip(records, paths)):
        return records
    by_path: dict[str, list[dict]] = {}
    for r in records:
        by_path.setdefault(str(r.get("path")), []).append(r)
    out = []
    for p in paths:
        recs = by_path.get(p)
        if not recs:
            raise RuntimeError(f"the model returned no record for {p}")
        out.append(recs[0] if len(recs) == 1 else {**aggregate(recs, classifier), "path": p})
    return out


def aggregate(records: list[dict], classifier: Classifier | None = None) -> dict:
    """One series-level record: per task, the mean of the instances' probabilities.

    The series abstains on a task when the mean top probability is below the model's
    threshold for it; instances that failed to classify are left out (all failed -> error).
    """
    ok = [r for r in records if r.get("predictions")]
    if not ok:
        return dict(records[0]) if records else error_record("", classifier, RuntimeError("empty"))
    package = getattr(classifier, "package", None)
    thresholds = dict(getattr(classifier, "thresholds", None) or getattr(package, "thresholds", {}) or {})
    bp_map = dict(getattr(package, "body_part_map", {}) or {})
    predictions = {}
    for task in ok[0]["predictions"]:
        probs = [r["predictions"][task]["probabilities"] for r in ok if task in r["predictions"]]
        labels = list(probs[0])
        mean = np.mean([[p[lab] for lab in labels] for p in probs], axis=0)
        best = int(np.argmax(mean))
        score = float(mean[best])
        predictions[task] = {"label": labels[best], "score": score,
                             "probabilities": {lab: float(v) for lab, v in zip(labels, mean)},
                             "abstained": score < float(thresholds.get(task, 0.0))}
    body_part = None
    for task, p in predictions.items():
        if not p["abstained"] and p["label"] in bp_map.get(task, {}):
            body_part = bp_map[task][p["label"]]
            break
    if body_part is None:
        parts = [r.get("body_part") for r in ok if r.get("body_part")]
        body_part = max(set(parts), key=parts.count) if parts else None
    first = ok[0]
    return {"path": None, "frame": None, "sop_instance_uid": None,
            "series_instance_uid": first.get("series_instance_uid"),
            "model": first.get("model"), "model_version": first.get("model_version"),
            "predictions": predictions,
            "abstained": any(p["abstained"] for p in predictions.values()),
            "body_part": body_part, "error": None, "instances": len(ok)}
