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

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from radroute.errors import InvalidConfigError, NotDicomError, UnreadableError
from radroute.routing.classify import Classifier, MicroBatcher, aggregate, load_classifier, model_tasks
from radroute.routing.config import RouterConfig
from radroute.routing.delivery import DeliveryWorker
from radroute.routing.destinations import make_destination
from radroute.routing.journal import Journal
from radroute.routing.logs import hash_patient, log_event
from radroute.routing.rules import (NEEDS_PREDICTION, Decision, decide, tags_from_dataset,
                                   validate_rules_against_tasks)
from radroute.routing.series import Pending, SeriesCollector, SeriesGroup
from radroute.routing.spool import Spool
from radroute.routing.tagfix import disagreement


def check_model_against_rules(cfg: RouterConfig, classifier: Classifier) -> None:
    """Label conditions must name tasks and classes the model has (checked at start)."""
    validate_rules_against_tasks(cfg, model_tasks(classifier), classifier.name)


def read_header(path: str | Path) -> Dataset:
    """A header-only read (stops before Pixel Data); raises NotDicomError/UnreadableError."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except FileNotFoundError as exc:
        raise UnreadableError("file not found", path, code="not_found") from exc
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise UnreadableError(f"cannot read DICOM header: {exc}", path) from exc
    if not ds.get("SOPInstanceUID") or not ds.get("SOPClassUID"):
        raise NotDicomError("no (or empty) SOPClassUID/SOPInstanceUID: not a routable instance", path)
    return ds


def _file_bytes_with_meta(path: Path) -> bytes:
    """A file without (complete) file meta, rewritten in the DICOM file format."""
    ds = pydicom.dcmread(path, force=True)
    meta = ds.file_meta if isinstance(getattr(ds, "file_meta", None), FileMetaDataset) else FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if ds.is_implicit_VR else ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.setdefault("ImplementationClassUID", PYDICOM_IMPLEMENTATION_UID)
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _summary(prediction: dict | None) -> dict | None:
    if not prediction or not prediction.get("predictions"):
        return None
    return {t: {"label": p.get("label"), "score": round(float(p.get("score") or 0), 4),
                "abstained": bool(p.get("abstained"))}
            for t, p in prediction["predictions"].items()}


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
                                                  cfg.classifier.threads)
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
        ds = read_header(path)
        meta = getattr(ds, "file_meta", None)
        complete = meta is not None and all(k in meta for k in (
            "TransferSyntaxUID", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID"))
        if complete and ds.preamble is not None:
            return self._ingest(None, ds, source, src_path=path)
        data = _file_bytes_with_meta(path)
        return self._ingest(data, read_header(io.BytesIO(data)), source)

    def _ingest(self, data: bytes | None, ds: Dataset, source: str, src_path: Path | None = None) -> int:
        tags = tags_from_dataset(ds, self.cfg.tag_keywords)
        uid = tags.get("SOPInstanceUID")
        if not uid:
            raise NotDicomError("no SOPInstanceUID", src_path)
        patient = hash_patient(ds.get("PatientID") or ds.get("PatientName"))
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
    def _wants_prediction(self, decision) -> bool:
        if decision is NEEDS_PREDICTION:
            return True
        return self.batcher is not None and any(
            self._dest_wants_prediction(self.cfg.destinations[n]) for n in decision.destinations)

    def _dest_wants_prediction(self, dcfg) -> bool:
        if dcfg.correct_tags:
            return self.cfg.tag_correction is not None
        return dcfg.needs_prediction

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
            d = decide(self.cfg, inst.tags)
            if self._wants_prediction(d):
                self.batcher.submit(inst.spool_path, ("instance", inst))
            else:
                ready.append((inst, None, d))
        self._record(ready)

    def _collect_series(self, items: list[Pending]) -> None:
        ready = []
        for inst in items:
            key = inst.series_instance_uid or f"instance:{inst.sop_instance_uid}"
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
            d = decide(self.cfg, group.instances[0].tags)
            if not self._wants_prediction(d):
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

    def _decide_series(self, group: SeriesGroup, prediction: dict | None, d=None) -> None:
        if d is None:
            d = decide(self.cfg, group.instances[0].tags, prediction, classified=True)
        with self._series_lock:
            self.series.remember_decision(group.key, d, prediction)
        self._record([(inst, prediction, d) for inst in group.instances])

    def _on_classified(self, results: list[tuple[object, dict]]) -> None:
        ready = []
        for (kind, ref), record in results:
            if kind == "instance":
                ready.append((ref, record, decide(self.cfg, ref.tags, record, classified=True)))
            else:
                ref.results.append(record)
                if len(ref.results) == ref.expected:
                    self._decide_series(ref.group, aggregate(ref.results, self.classifier))
        self._record(ready)

    def _record(self, items: list[tuple[Pending, dict | None, Decision]]) -> None:
        if not items:
            return
        with self._record_lock:
            if self._closed:
                return
            entries = []
            for inst, pred, d in items:
                entries.append((inst.id, inst.sop_instance_uid, pred, d.rule, list(d.destinations),
                                disagreement(inst.tags, pred)))
            _, finished = self.journal.record_decisions(entries, self.cfg.resend_duplicates)
        if not self.cfg.keep_delivered:
            for path in finished:
                self.spool.remove(path)
        now = time.monotonic()
        for (inst, pred, d), entry in zip(items, entries):
            log_event("routed", sop_instance_uid=inst.sop_instance_uid, rule=d.rule, reason=d.reason,
                      destinations=list(d.destinations), prediction=_summary(pred),
                      decide_ms=round(1000 * (now - inst.received), 1))
            if entry[5]:
                log_event("tag_disagreement", level=30, sop_instance_uid=inst.sop_instance_uid,
                          **entry[5])
        for name in {n for _, _, d in items for n in d.destinations}:
            self.workers[name].wake.set()


def _where(dcfg) -> str:
    if dcfg.type == "dicom":
        return f"dicom {dcfg.ae_title}@{dcfg.host}:{dcfg.port}"
    return f"stow {dcfg.url}"


# ---- dry run ------------------------------------------------------------------------------------
def plan(cfg: RouterConfig, paths: list[Path], classifier: Classifier | None = None,
         batch_size: int = 16) -> list[dict]:
    """Which rule and destinations each file would get (``route --dry-run``); nothing is sent."""
    from radroute.routing.destinations import FolderDestination
    from radroute.routing.journal import DeliveryRow

    if cfg.needs_prediction and classifier is None:
        classifier = load_classifier(cfg.classifier.model, cfg.classifier.backend, cfg.classifier.threads)
    if classifier is not None:
        check_model_against_rules(cfg, classifier)
    rows: list[dict] = []
    for path in paths:
        row = {"path": str(path), "sop_instance_uid": None, "series_instance_uid": None,
               "rule": None, "reason": None, "destinations": None, "targets": None,
               "prediction": None, "disagreement": None, "error": None}
        try:
            ds = read_header(path)
            row["tags"] = tags_from_dataset(ds, cfg.tag_keywords)
            row["sop_instance_uid"] = row["tags"].get("SOPInstanceUID")
            row["series_instance_uid"] = row["tags"].get("SeriesInstanceUID")
        except Exception as exc:  # noqa: BLE001 - reported per file
            from radroute.errors import error_dict

            row["error"] = error_dict(exc)
        rows.append(row)
    ok = [r for r in rows if r["error"] is None]

    def wants(d) -> bool:
        return d is NEEDS_PREDICTION or (classifier is not None and any(
            cfg.destinations[n].needs_prediction and (cfg.tag_correction is not None
                                                      or not cfg.destinations[n].correct_tags)
            for n in d.destinations))

    need = [r for r in ok if wants(decide(cfg, r["tags"]))]
    if need and classifier is not None:
        from radroute.routing.classify import predict_first_frames, one_record_per_path

        paths_ = [r["path"] for r in need]
        records = []
        for i in range(0, len(paths_), batch_size):
            chunk = paths_[i:i + batch_size]
            records += one_record_per_path(classifier, chunk, predict_first_frames(classifier, chunk))
        for r, rec in zip(need, records):
            r["prediction_record"] = rec
    if cfg.decision == "series":
        groups: dict[str, list[dict]] = {}
        for r in ok:
            groups.setdefault(r["series_instance_uid"] or r["path"], []).append(r)
        for members in groups.values():
            recs = [m["prediction_record"] for m in members if "prediction_record" in m]
            agg = aggregate(recs, classifier) if recs else None
            for m in members:
                m["prediction_record"] = agg
    folders = {n: FolderDestination(c) for n, c in cfg.destinations.items() if c.type == "folder"}
    for r in ok:
        pred = r.pop("prediction_record", None)
        d = decide(cfg, r["tags"], pred, classified=True)
        r.update(rule=d.rule, reason=d.reason, destinations=list(d.destinations),
                 prediction=_summary(pred), disagreement=disagreement(r["tags"], pred))
        fake = DeliveryRow(r["sop_instance_uid"], "", 0, 0, r["path"], None, None, r["tags"], pred, d.rule)
        r["targets"] = {n: str(folders[n].target(fake)) if n in folders else _where(cfg.destinations[n])
                        for n in d.destinations}
    for r in rows:
        r.pop("tags", None)
    return rows


__all__ = ["RouterService", "plan", "read_header", "check_model_against_rules"]
