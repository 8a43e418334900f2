"""The router service: sources -> spool + journal -> decision (micro-batched classification) -> delivery.

Threads: the SCP's association threads and the folder watcher *ingest* (spool fsync, journal
commit, then acknowledge); one dispatcher thread decides (header-only when the rules allow,
otherwise through the :class:`~radroute.routing.classify.MicroBatcher`); one worker per
destination delivers. Every state change is in the journal, so a restart resumes exactly
where the previous run stopped: undecided instances are decided, queued deliveries sent.
"""
from __future__ import annotations

import io
import queue
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.dataset import Dataset

from radroute.errors import InvalidConfigError, NotDicomError
from radroute.inference.record import Prediction
from radroute.routing.classify import Classifier, MicroBatcher, aggregate, load_classifier
from radroute.routing.config import RouterConfig
from radroute.routing.decide import final_decision, first_decision, results_destinations, series_key
from radroute.routing.delivery import DeliveryWorker
from radroute.routing.destinations import make_destination
from radroute.routing.ingest import file_bytes_with_meta, has_complete_meta, read_instance_header
from radroute.routing.journal import Journal
from radroute.routing.logs import hash_patient, log_event
from radroute.routing.net import configure_pynetdicom
from radroute.routing.results import MadeInstance, make_result
from radroute.routing.rules import Decision, tags_from_dataset, validate_rules_against_tasks
from radroute.routing.series import Pending, SeriesCollector, SeriesGroup
from radroute.routing.spool import Spool
from radroute.routing.tagfix import disagreement


def check_model_against_rules(cfg: RouterConfig, classifier: Classifier) -> None:
    """Label conditions must name tasks and classes the model has (checked at start)."""
    validate_rules_against_tasks(cfg, classifier.tasks, classifier.name)


def summary(prediction: Prediction | None) -> dict | None:
    """Per task label, score (4 decimals) and abstention: what logs and the dry run show."""
    if prediction is None or not prediction.predictions:
        return None
    return {t: {"label": p.label, "score": round(p.score, 4), "abstained": p.abstained}
            for t, p in prediction.predictions.items()}


@dataclass
class _SeriesFlush:
    group: SeriesGroup
    expected: int
    results: list = field(default_factory=list)


class RouterService:
    """Wire sources, journal, classifier and destinations together (``start``/``stop``)."""

    def __init__(self, cfg: RouterConfig, classifier: Classifier | None = None,
                 start_sources: bool = True):
        self.cfg = cfg
        self.classifier = classifier
        self.start_sources = start_sources
        self.batcher: MicroBatcher | None = None
        self.scp = None
        self.watcher = None
        self.workers: dict[str, DeliveryWorker] = {}
        self._queue: queue.Queue[Pending] = queue.Queue()
        self._stopping = threading.Event()
        self._closed = False
        self._record_lock = threading.Lock()
        self._series_lock = threading.Lock()
        self.series = (SeriesCollector(cfg.series_quiet_seconds, cfg.series_max_classified)
                       if cfg.decision == "series" else None)
        self._dispatcher = threading.Thread(target=self._dispatch_loop, name="radroute-dispatch",
                                            daemon=True)

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "RouterService":
        """Open the spool and journal, resume pending work, start workers and sources."""
        configure_pynetdicom()
        self.spool = Spool(self.cfg.spool)
        if not self.spool.lock():
            raise InvalidConfigError(f"another radroute router is using the spool {self.cfg.spool}",
                                     self.cfg.source_path)
        self.journal = Journal(self.cfg.spool)
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "RouterService":
        cfg = self.cfg
        orphans = self.spool.orphans(self.journal.spool_paths())
        for path in orphans:  # spooled but never acknowledged (crash before the commit)
            self.spool.remove(path)
        requeued = self.journal.reset_in_flight()
        if cfg.needs_prediction:
            if self.classifier is None:
                self.classifier = load_classifier(cfg.classifier.model, cfg.classifier.backend,
                                                  cfg.classifier.threads, cfg.classifier.threshold)
            check_model_against_rules(cfg, self.classifier)
            self.batcher = MicroBatcher(self.classifier, cfg.classifier.batch_size,
                                        cfg.classifier.max_wait_ms, on_results=self._on_classified)
        for name, dcfg in cfg.destinations.items():
            worker = DeliveryWorker(make_destination(dcfg, cfg.tag_correction), self.journal,
                                    self.spool, cfg.keep_delivered)
            self.workers[name] = worker
            worker.start()
        pending = self.journal.pending_instances()
        for row in pending:
            self._queue.put(Pending(row.id, row.sop_instance_uid, row.series_instance_uid,
                                    row.spool_path, row.tags))
        self._dispatcher.start()
        log_event("router_started", spool=str(cfg.spool), decision=cfg.decision,
                  model=getattr(self.classifier, "name", None),
                  model_version=getattr(self.classifier, "version", None),
                  destinations={n: w.dest.describe() for n, w in self.workers.items()},
                  resumed_instances=len(pending), uncertain_deliveries=requeued,
                  orphans_removed=len(orphans))
        if self.start_sources:
            if cfg.scp is not None:
                from radroute.routing.scp import StoreSCP

                self.scp = StoreSCP(cfg.scp, self._on_store)
                try:
                    self.scp.start()
                except OSError as exc:
                    self.scp = None
                    raise InvalidConfigError(f"scp: cannot listen on {cfg.scp.host}:{cfg.scp.port}: "
                                             f"{exc.strerror or exc}", cfg.source_path) from exc
            if cfg.watch is not None:
                from radroute.routing.watch import FolderWatcher

                self.watcher = FolderWatcher(cfg.watch.path, lambda p: self.ingest_file(p, "watch"),
                                             cfg.watch.poll_seconds)
                self.watcher.start()
        return self

    def stop(self) -> None:
        """Graceful stop: refuse new input, finish the current batches, keep the rest for later."""
        log_event("router_stopping")
        if self.scp is not None:
            self.scp.stop()
        if self.watcher is not None:
            self.watcher.stop()
        self._stopping.set()
        if self._dispatcher.is_alive():
            self._dispatcher.join(timeout=30)
        if self.batcher is not None:
            self.batcher.close(drain=False)
        with self._record_lock:
            self._closed = True
        for worker in self.workers.values():
            worker.stop()
        status = self.journal.status(recent=0)
        self.journal.close()
        self.spool.unlock()
        log_event("router_stopped", instances=status["instances"], deliveries=status["deliveries"])

    def run_forever(self) -> None:
        """Run until SIGTERM or SIGINT, then stop gracefully."""
        done = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: done.set())
        self.start()
        done.wait()
        self.stop()

    def wait_idle(self, timeout: float = 60.0, poll: float = 0.1) -> bool:
        """Block until nothing is undecided, queued or in flight (``False`` on timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.journal.status(recent=0)
            busy = st["instances"].get("received", 0) + sum(
                d.get("queued", 0) + d.get("sending", 0) + d.get("uncertain", 0)
                for d in st["deliveries"].values())
            if busy == 0 and self._queue.empty():
                return True
            time.sleep(poll)
        return False

    # ---- ingest ------------------------------------------------------------------------------
    def _on_store(self, data: bytes, ds: Dataset, calling_ae: str) -> None:
        self._ingest(data, ds, f"scp:{calling_ae}")

    def ingest_file(self, path: str | Path, source: str = "file") -> int:
        """Spool and journal a DICOM file from disk (header-only read for the tags)."""
        path = Path(path)
        ds = read_instance_header(path)
        if has_complete_meta(ds):
            return self._ingest(None, ds, source, src_path=path)
        data = file_bytes_with_meta(path)
        return self._ingest(data, read_instance_header(io.BytesIO(data)), source)

    def _ingest(self, data: bytes | None, ds: Dataset, source: str, src_path: Path | None = None) -> int:
        tags = tags_from_dataset(ds, self.cfg.tag_keywords)
        uid = tags.get("SOPInstanceUID")
        if not uid:
            raise NotDicomError("no SOPInstanceUID", src_path)
        patient = hash_patient(ds.get("PatientID") or ds.get("PatientName"), self.cfg.patient_hash_salt)
        path = self.spool.store_bytes(data) if data is not None else self.spool.store_file(src_path)
        try:
            inst_id = self.journal.add_instance(str(path), tags, source, patient)
        except Exception:
            self.spool.remove(path)
            raise
        log_event("received", sop_instance_uid=uid, series_instance_uid=tags.get("SeriesInstanceUID"),
                  modality=tags.get("Modality"), source=source, patient=patient)
        self._queue.put(Pending(inst_id, uid, tags.get("SeriesInstanceUID"), str(path), tags))
        return inst_id

    # ---- deciding ----------------------------------------------------------------------------
    def _prune(self) -> None:
        removed = self.journal.prune(self.cfg.journal_keep_days * 86400)
        if removed:
            log_event("journal_pruned", deliveries=removed, keep_days=self.cfg.journal_keep_days)
        self._next_prune = time.monotonic() + 3600

    def _dispatch_loop(self) -> None:
        self._prune()
        while not self._stopping.is_set():
            if time.monotonic() > self._next_prune:
                self._prune()
            try:
                items = [self._queue.get(timeout=0.1)]
            except queue.Empty:
                items = []
            while items and len(items) < 512:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                if self.series is None:
                    self._decide_instances(items)
                else:
                    self._collect_series(items)
            except Exception as exc:  # noqa: BLE001 - the journal keeps them 'received'
                log_event("dispatch_failed", level=40, error=f"{type(exc).__name__}: {exc}",
                          instances=len(items))
                time.sleep(1.0)

    def _decide_instances(self, items: list[Pending]) -> None:
        ready = []
        for inst in items:
            d, classify = first_decision(self.cfg, inst.tags, self.batcher is not None)
            if classify:
                self.batcher.submit(inst.spool_path, ("instance", inst))
            else:
                ready.append((inst, None, d or final_decision(self.cfg, inst.tags, None)))
        self._record(ready)

    def _collect_series(self, items: list[Pending]) -> None:
        ready = []
        for inst in items:
            key = series_key(inst.sop_instance_uid, inst.series_instance_uid)
            with self._series_lock:
                known = self.series.known_decision(key)
            if known is None and key not in self.series.groups and inst.series_instance_uid:
                known = self._decision_from_journal(inst.series_instance_uid)
                if known is not None:
                    with self._series_lock:
                        self.series.remember_decision(key, *known)
            if known is not None:  # a late instance of a decided series: same decision
                ready.append((inst, known[1], known[0]))
            else:
                self.series.add(inst)
        self._record(ready)
        for group in self.series.quiet_groups(force=self._stopping.is_set()):
            d, classify = first_decision(self.cfg, group.instances[0].tags, self.batcher is not None)
            if not classify:
                self._decide_series(group, None, d)
                continue
            sample = self.series.sample(group)
            flush = _SeriesFlush(group, len(sample))
            for inst in sample:
                self.batcher.submit(inst.spool_path, ("series", flush))

    def _decision_from_journal(self, series_uid: str):
        """A series decided before a restart keeps its rule (if the config still has it)."""
        found = self.journal.series_rule(series_uid)
        if found is None:
            return None
        rule_name, prediction = found
        if rule_name == "review" and self.cfg.review_destination:
            return Decision("review", (self.cfg.review_destination,), "review"), prediction
        for rule in self.cfg.rules:
            if rule.name == rule_name:
                reason = "default" if rule.default else "rule"
                return Decision(rule.name, rule.destinations, reason), prediction
        return None

    def _decide_series(self, group: SeriesGroup, prediction: Prediction | None,
                       d: Decision | None = None) -> None:
        if d is None:
            d = final_decision(self.cfg, group.instances[0].tags, prediction)
        with self._series_lock:
            self.series.remember_decision(group.key, d, prediction)
        self._record([(inst, prediction, d) for inst in group.instances],
                     self._results(prediction, d, group.instances))

    def _on_classified(self, results: list[tuple[object, Prediction]]) -> None:
        ready, made = [], []
        for (kind, ref), record in results:
            if kind == "instance":
                d = final_decision(self.cfg, ref.tags, record)
                ready.append((ref, record, d))
                made += self._results(record, d, [ref])
            else:
                ref.results.append(record)
                if len(ref.results) == ref.expected:
                    self._decide_series(ref.group, aggregate(ref.results, self.classifier))
        self._record(ready, made)

    def _results(self, prediction: Prediction | None, d: Decision,
                 instances: list[Pending]) -> list[MadeInstance]:
        """The SR of a classified instance (or series), spooled, if a destination wants it."""
        names = results_destinations(self.cfg, d, prediction)
        if not names:
            return []
        made = make_result(prediction, [i.spool_path for i in instances], names, self.spool,
                           self.cfg.tag_keywords, self.cfg.patient_hash_salt)
        return [made] if made else []

    def _record(self, items: list[tuple[Pending, Prediction | None, Decision]],
                made: list[MadeInstance] = ()) -> None:
        if not items:
            return
        with self._record_lock:
            if self._closed:
                for m in made:  # never journaled: the restart decides (and reports) again
                    self.spool.remove(m.spool_path)
                return
            entries = []
            for inst, pred, d in items:
                entries.append((inst.id, inst.sop_instance_uid, pred, d.rule, list(d.destinations),
                                disagreement(inst.tags, pred)))
            _, finished = self.journal.record_decisions(entries, self.cfg.resend_duplicates, made,
                                                        review_queue=self.cfg.review_queue)
        if not self.cfg.keep_delivered:
            for path in finished:
                self.spool.remove(path)
        now = time.monotonic()
        for (inst, pred, d), entry in zip(items, entries):
            log_event("routed", sop_instance_uid=inst.sop_instance_uid, rule=d.rule, reason=d.reason,
                      destinations=list(d.destinations), prediction=summary(pred),
                      decide_ms=round(1000 * (now - inst.received), 1))
            if entry[5]:
                log_event("tag_disagreement", level=30, sop_instance_uid=inst.sop_instance_uid,
                          **entry[5])
        for m in made:
            log_event("results_made", sop_instance_uid=m.tags.get("SOPInstanceUID"),
                      destinations=list(m.destinations))
        woken = {n for _, _, d in items for n in d.destinations}
        for name in woken | {n for m in made for n in m.destinations}:
            self.workers[name].wake.set()


__all__ = ["RouterService", "check_model_against_rules", "summary"]
