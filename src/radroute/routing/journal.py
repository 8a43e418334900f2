"""The router's journal: SQLite (WAL, ``synchronous=FULL``) recording every instance and delivery.

Instance states: ``received`` (spooled, acknowledged) -> ``classified`` (decided; deliveries
queued) -> ``done`` (every delivery sent; spool file removed). Delivery states, one row per
(SOPInstanceUID, destination): ``queued`` -> ``sending`` -> ``sent``, or ``dead`` after too
many failures; ``sending`` rows found after a crash become ``uncertain`` until the destination
has been asked whether it holds them. The primary key is the deduplication: a destination
gets each SOP instance once, and a duplicate received after delivery is not sent again
(unless ``resend_duplicates``).

The review queue (a router with ``[web]``): an instance whose prediction abstained or disagrees
with its tags gets a ``reviews`` row (``pending`` -> ``settled``) in the transaction that records
its decision. Reviewed instances keep their spool file (the labelled examples of
``/api/labels.csv``) whatever ``keep_delivered`` says, and are never pruned.
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from radroute.errors import InvalidConfigError
from radroute.inference.record import Prediction

#: ``PRAGMA user_version`` of the schema below; a journal written by a newer radroute is refused
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY,
    sop_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT,
    sop_class_uid TEXT,
    transfer_syntax TEXT,
    spool_path TEXT NOT NULL,
    source TEXT,
    patient_hash TEXT,
    tags TEXT NOT NULL,
    state TEXT NOT NULL,
    prediction TEXT,
    rule TEXT,
    disagreement TEXT,
    received_at REAL NOT NULL,
    decided_at REAL
);
CREATE INDEX IF NOT EXISTS instances_state ON instances(state);
CREATE TABLE IF NOT EXISTS deliveries (
    sop_instance_uid TEXT NOT NULL,
    destination TEXT NOT NULL,
    instance_id INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    queued_at REAL NOT NULL,
    sent_at REAL,
    PRIMARY KEY (sop_instance_uid, destination)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(destination, state, next_attempt_at);
CREATE INDEX IF NOT EXISTS deliveries_instance ON deliveries(instance_id);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    destination TEXT,
    sop_instance_uid TEXT,
    message TEXT
);
CREATE INDEX IF NOT EXISTS deliveries_sent ON deliveries(sent_at);
CREATE TABLE IF NOT EXISTS reviews (
    instance_id INTEGER PRIMARY KEY,
    reason TEXT NOT NULL,
    prediction TEXT NOT NULL,
    state TEXT NOT NULL,
    verdict TEXT,
    labels TEXT,
    settled_by TEXT,
    settled_at REAL,
    queued_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reviews_state ON reviews(state, reason);
"""
#: why an instance waits for review
REVIEW_REASONS = ("abstained", "disagreement")
#: how a review was settled
VERDICTS = ("accepted", "corrected", "not_medical")


@dataclass
class InstanceRow:
    id: int
    sop_instance_uid: str
    series_instance_uid: str | None
    spool_path: str
    tags: dict
    prediction: Prediction | None
    received_at: float


@dataclass
class DeliveryRow:
    sop_instance_uid: str
    destination: str
    instance_id: int
    attempts: int
    spool_path: str
    sop_class_uid: str | None
    transfer_syntax: str | None
    tags: dict
    prediction: Prediction | None
    rule: str | None


@dataclass
class ReviewRow:
    """An instance in the review queue (``id`` is the instance's id) and how it was settled."""

    id: int
    sop_instance_uid: str
    series_instance_uid: str | None
    spool_path: str
    tags: dict
    patient_hash: str | None
    reason: str
    #: the model's record when the instance was first decided
    prediction: Prediction
    disagreement: dict | None
    state: str                      # pending | settled
    verdict: str | None             # accepted | corrected | not_medical
    labels: dict[str, str] | None
    settled_by: str | None
    settled_at: float | None
    queued_at: float
    #: the instance's current rule (the rule it was routed by again after review)
    rule: str | None


class ReviewNotFound(KeyError):
    """No review queue entry with that id."""


class ReviewSettled(Exception):
    """The review was settled already (by someone else); ``row`` is how."""

    def __init__(self, row: ReviewRow):
        super().__init__(f"review {row.id} was settled already")
        self.row = row


def review_reason(prediction: Prediction | None, disagreement: dict | None) -> str | None:
    """``abstained`` (the model answered, unsure), ``disagreement`` (confident, but the tags say
    otherwise) or ``None``. Failed classifications are not reviewed: there is nothing to judge."""
    if prediction is None or not prediction.ok:
        return None
    if prediction.abstained:
        return "abstained"
    return "disagreement" if disagreement else None


_REVIEW_SELECT = (
    "SELECT r.instance_id, i.sop_instance_uid, i.series_instance_uid, i.spool_path, i.tags,"
    " i.patient_hash, r.reason, r.prediction, i.disagreement, r.state, r.verdict, r.labels,"
    " r.settled_by, r.settled_at, r.queued_at, i.rule FROM reviews r JOIN instances i ON i.id = r.instance_id")


def _review(r: tuple) -> ReviewRow:
    return ReviewRow(r[0], r[1], r[2], r[3], json.loads(r[4]), r[5], r[6], _prediction(r[7]),
                     json.loads(r[8]) if r[8] else None, r[9], r[10],
                     json.loads(r[11]) if r[11] else None, r[12], r[13], r[14], r[15])


def _prediction(text: str | None) -> Prediction | None:
    return Prediction.from_dict(json.loads(text)) if text else None


def _json(prediction: Prediction | None) -> str | None:
    return json.dumps(prediction.to_dict()) if prediction is not None else None


def _delivery(r: tuple) -> DeliveryRow:
    return DeliveryRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7]), _prediction(r[8]), r[9])


class Journal:
    """Thread-safe access to the journal; each write is one committed (fsync'd) transaction."""

    def __init__(self, root: str | Path, readonly: bool = False):
        self.path = Path(root) / "journal.sqlite"
        self.lock = threading.RLock()
        if readonly:
            if not self.path.exists():
                raise FileNotFoundError(self.path)
            self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                      check_same_thread=False, isolation_level=None)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA busy_timeout=10000")
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            self.db.close()
            raise InvalidConfigError(f"the journal has schema version {version}; this radroute "
                                     f"reads up to {SCHEMA_VERSION} (a newer radroute wrote it)", self.path)
        if not readonly:
            self.db.executescript(SCHEMA)  # creates what an older (or unversioned) journal lacks
            self.db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        #: a version-1 journal read before its router upgraded it has no review queue
        self.has_reviews = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type='table' AND name='reviews'").fetchone() is not None

    def close(self) -> None:
        with self.lock:
            self.db.close()

    def _tx(self, durable: bool = True):
        return _Transaction(self, durable)

    # ---- receiving ---------------------------------------------------------------------------
    def add_instance(self, spool_path: str, tags: dict, source: str, patient_hash: str | None) -> int:
        """Record a spooled instance (state ``received``); durable when this returns."""
        with self._tx() as db:
            return _insert_instance(db, spool_path, tags, source, patient_hash)

    def pending_instances(self) -> list[InstanceRow]:
        """Instances received but not yet decided (to resume after a restart)."""
        with self.lock:
            rows = self.db.execute(
                "SELECT id, sop_instance_uid, series_instance_uid, spool_path, tags, prediction,"
                " received_at FROM instances WHERE state='received' ORDER BY id").fetchall()
        return [InstanceRow(r[0], r[1], r[2], r[3], json.loads(r[4]), _prediction(r[5]), r[6])
                for r in rows]

    def spool_paths(self) -> set[str]:
        """Every spool file the journal knows (kept ``done`` ones included)."""
        with self.lock:
            return {r[0] for r in self.db.execute("SELECT spool_path FROM instances")}

    def series_rule(self, series_instance_uid: str) -> tuple[str, Prediction | None] | None:
        """The rule (and prediction) an earlier instance of this series was routed by."""
        with self.lock:
            row = self.db.execute(
                "SELECT rule, prediction FROM instances WHERE series_instance_uid=? AND rule IS NOT NULL"
                " ORDER BY id DESC LIMIT 1", (series_instance_uid,)).fetchone()
        return (row[0], _prediction(row[1])) if row else None

    # ---- deciding ----------------------------------------------------------------------------
    def record_decisions(self, items: list[tuple[int, str, Prediction | None, str, list[str], dict | None]],
                         resend_duplicates: bool = False, made: Sequence = (),
                         review_queue: bool = False) -> tuple[int, list[str]]:
        """Store decisions and queue deliveries in one transaction.

        ``items``: (instance id, SOPInstanceUID, prediction, rule name, destinations,
        disagreement). ``made``: instances the router made and spooled (result SRs, with
        ``spool_path``, ``tags``, ``source``, ``patient_hash``, ``rule``, ``destinations``),
        added already decided. With ``review_queue``, instances with a :func:`review_reason`
        join the review queue. Returns (deliveries queued, spool paths of instances already
        complete).
        """
        now = time.time()
        queued = 0
        touched: set[int] = set()
        with self._tx(durable=False) as db:
            items = list(items) + [
                (_insert_instance(db, m.spool_path, m.tags, m.source, m.patient_hash),
                 m.tags.get("SOPInstanceUID", ""), None, m.rule, list(m.destinations), None)
                for m in made]
            for inst_id, uid, prediction, rule, destinations, disagreement in items:
                db.execute(
                    "UPDATE instances SET state='classified', prediction=?, rule=?, disagreement=?,"
                    " decided_at=? WHERE id=?",
                    (_json(prediction), rule,
                     json.dumps(disagreement) if disagreement else None, now, inst_id))
                touched.add(inst_id)
                reason = review_reason(prediction, disagreement) if review_queue else None
                if reason:
                    db.execute("INSERT OR IGNORE INTO reviews (instance_id, reason, prediction, state,"
                               " queued_at) VALUES (?,?,?,'pending',?)",
                               (inst_id, reason, _json(prediction), now))
                queued += self._queue_deliveries(db, inst_id, uid, destinations, now,
                                                 resend_duplicates, touched)
            done = self._finish(db, touched)
        return queued, done

    @staticmethod
    def _queue_deliveries(db: sqlite3.Connection, inst_id: int, uid: str, destinations: list[str],
                          now: float, resend_duplicates: bool, touched: set[int]) -> int:
        """Queue ``uid`` for each destination that does not have it yet; returns how many.
        Instances whose queued delivery this one takes over are added to ``touched``."""
        queued = 0
        for dest in destinations:
            old = db.execute("SELECT instance_id, state FROM deliveries WHERE"
                             " sop_instance_uid=? AND destination=?", (uid, dest)).fetchone()
            if old is None:
                db.execute("INSERT INTO deliveries (sop_instance_uid, destination,"
                           " instance_id, state, next_attempt_at, queued_at)"
                           " VALUES (?,?,?,'queued',?,?)", (uid, dest, inst_id, now, now))
                queued += 1
                continue
            old_id, state = old
            if state in ("queued", "dead") or (state == "sent" and resend_duplicates):
                db.execute("UPDATE deliveries SET instance_id=?, state='queued', attempts=0,"
                           " next_attempt_at=?, last_error=NULL WHERE sop_instance_uid=?"
                           " AND destination=?", (inst_id, now, uid, dest))
                touched.add(old_id)
                queued += 1
            else:  # sent (or in flight): this destination already has the instance
                db.execute("INSERT INTO events (at, kind, destination, sop_instance_uid,"
                           " message) VALUES (?,?,?,?,?)",
                           (now, "duplicate", dest, uid, f"already {state}; not sent again"))
        return queued

    @staticmethod
    def _finish(db: sqlite3.Connection, ids: set[int]) -> list[str]:
        """Mark instances with nothing left to deliver ``done``; return the spool paths that can
        go (not those of reviewed instances: they are labelled examples, or still to be judged)."""
        paths = []
        for inst_id in ids:
            row = db.execute(
                "SELECT spool_path, EXISTS (SELECT 1 FROM reviews WHERE instance_id=?) FROM instances"
                " WHERE id=? AND state='classified' AND NOT EXISTS"
                " (SELECT 1 FROM deliveries WHERE instance_id=? AND state != 'sent')",
                (inst_id, inst_id, inst_id)).fetchone()
            if row:
                db.execute("UPDATE instances SET state='done' WHERE id=?", (inst_id,))
                if not row[1]:
                    paths.append(row[0])
        return paths

    # ---- delivering --------------------------------------------------------------------------
    def reset_in_flight(self) -> int:
        """After a crash, deliveries left ``sending`` may or may not have arrived: mark them
        ``uncertain`` (each worker asks its destination before sending them again)."""
        with self._tx() as db:
            return db.execute("UPDATE deliveries SET state='uncertain' WHERE state='sending'").rowcount

    def uncertain(self, destination: str) -> list[DeliveryRow]:
        with self.lock:
            rows = self.db.execute(
                "SELECT d.sop_instance_uid, d.destination, d.instance_id, d.attempts, i.spool_path,"
                " i.sop_class_uid, i.transfer_syntax, i.tags, i.prediction, i.rule"
                " FROM deliveries d JOIN instances i ON i.id = d.instance_id"
                " WHERE d.destination=? AND d.state='uncertain'", (destination,)).fetchall()
        return [_delivery(r) for r in rows]

    def resolve_uncertain(self, destination: str, present: list[DeliveryRow],
                          absent: list[DeliveryRow]) -> list[str]:
        """``present`` (the destination has them) -> ``sent``; ``absent`` -> ``queued``."""
        now = time.time()
        with self._tx() as db:
            db.executemany("UPDATE deliveries SET state='sent', sent_at=?, last_error=NULL"
                           " WHERE sop_instance_uid=? AND destination=?",
                           [(now, r.sop_instance_uid, destination) for r in present])
            db.executemany("UPDATE deliveries SET state='queued' WHERE sop_instance_uid=? AND"
                           " destination=?", [(r.sop_instance_uid, destination) for r in absent])
            return self._finish(db, {r.instance_id for r in present})

    def claim(self, destination: str, limit: int) -> list[DeliveryRow]:
        """Take up to ``limit`` due deliveries for ``destination`` (state -> ``sending``)."""
        now = time.time()
        with self._tx(durable=False) as db:
            rows = db.execute(
                "SELECT d.sop_instance_uid, d.destination, d.instance_id, d.attempts, i.spool_path,"
                " i.sop_class_uid, i.transfer_syntax, i.tags, i.prediction, i.rule"
                " FROM deliveries d JOIN instances i ON i.id = d.instance_id"
                " WHERE d.destination=? AND d.state='queued' AND d.next_attempt_at <= ?"
                " ORDER BY d.next_attempt_at, d.queued_at LIMIT ?", (destination, now, limit)).fetchall()
            db.executemany("UPDATE deliveries SET state='sending' WHERE sop_instance_uid=?"
                           " AND destination=?", [(r[0], destination) for r in rows])
        return [_delivery(r) for r in rows]

    def next_due(self, destination: str) -> float | None:
        with self.lock:
            row = self.db.execute("SELECT MIN(next_attempt_at) FROM deliveries WHERE destination=?"
                                  " AND state='queued'", (destination,)).fetchone()
        return row[0]

    def complete(self, destination: str, sent: list[DeliveryRow],
                 failed: list[tuple[DeliveryRow, str, float | None]],
                 released: list[DeliveryRow] = ()) -> list[str]:
        """Record a batch's outcome in one transaction.

        ``failed``: (row, error, next attempt time or ``None`` = dead-letter). ``released``:
        rows back to ``queued`` without counting an attempt (destination unavailable).
        Returns spool paths of instances now fully delivered.
        """
        now = time.time()
        with self._tx() as db:
            db.executemany("UPDATE deliveries SET state='sent', sent_at=?, attempts=attempts+1,"
                           " last_error=NULL WHERE sop_instance_uid=? AND destination=?",
                           [(now, r.sop_instance_uid, destination) for r in sent])
            for row, error, next_at in failed:
                dead = next_at is None
                db.execute("UPDATE deliveries SET state=?, attempts=attempts+1, last_error=?,"
                           " next_attempt_at=? WHERE sop_instance_uid=? AND destination=?",
                           ("dead" if dead else "queued", error, next_at or now,
                            row.sop_instance_uid, destination))
                db.execute("INSERT INTO events (at, kind, destination, sop_instance_uid, message)"
                           " VALUES (?,?,?,?,?)", (now, "dead" if dead else "retry", destination,
                                                   row.sop_instance_uid, error))
            db.executemany("UPDATE deliveries SET state='queued' WHERE sop_instance_uid=? AND"
                           " destination=?", [(r.sop_instance_uid, destination) for r in released])
            return self._finish(db, {r.instance_id for r in sent})

    def prune(self, older_than_seconds: float) -> int:
        """Forget finished work older than that: ``done`` instances, their ``sent`` deliveries
        (after which a re-sent duplicate would be delivered again) and old events."""
        cutoff = time.time() - older_than_seconds
        with self._tx(durable=False) as db:
            n = db.execute("DELETE FROM deliveries WHERE state='sent' AND sent_at < ? AND instance_id IN"
                           " (SELECT id FROM instances WHERE state='done')", (cutoff,)).rowcount
            db.execute("DELETE FROM instances WHERE state='done' AND received_at < ? AND NOT EXISTS"
                       " (SELECT 1 FROM deliveries WHERE instance_id = instances.id) AND NOT EXISTS"
                       " (SELECT 1 FROM reviews WHERE instance_id = instances.id)", (cutoff,))
            db.execute("DELETE FROM events WHERE at < ?", (cutoff,))
        return n

    def add_event(self, kind: str, message: str, destination: str | None = None,
                  sop_instance_uid: str | None = None) -> None:
        with self._tx(durable=False) as db:
            db.execute("INSERT INTO events (at, kind, destination, sop_instance_uid, message)"
                       " VALUES (?,?,?,?,?)", (time.time(), kind, destination, sop_instance_uid,
                                               message))

    # ---- reporting ---------------------------------------------------------------------------
    def status(self, recent: int = 10) -> dict:
        """Counts per instance state and per destination and delivery state, recent errors."""
        with self.lock:
            inst = dict(self.db.execute("SELECT state, COUNT(*) FROM instances GROUP BY state"))
            dests: dict[str, dict[str, int]] = {}
            for dest, state, n in self.db.execute(
                    "SELECT destination, state, COUNT(*) FROM deliveries GROUP BY destination, state"):
                dests.setdefault(dest, {})[state] = n
            disagreements = self.db.execute(
                "SELECT COUNT(*) FROM instances WHERE disagreement IS NOT NULL").fetchone()[0]
            errors = [
                {"at": at, "kind": kind, "destination": dest, "sop_instance_uid": uid, "message": msg}
                for at, kind, dest, uid, msg in self.db.execute(
                    "SELECT at, kind, destination, sop_instance_uid, message FROM events"
                    " WHERE kind != 'duplicate' ORDER BY id DESC LIMIT ?", (recent,))]
            review = (dict(self.db.execute("SELECT state, COUNT(*) FROM reviews GROUP BY state"))
                      if self.has_reviews else {})
        return {"instances": inst, "deliveries": dests, "disagreements": disagreements,
                "recent_errors": errors, "review": review}

    def delivery_rate(self, minutes: int = 15, now: float | None = None) -> dict[str, list[int]]:
        """Deliveries sent per minute over the last ``minutes``, per destination (oldest first)."""
        now = time.time() if now is None else now
        start = now - 60 * minutes
        out: dict[str, list[int]] = {}
        with self.lock:
            rows = self.db.execute(
                "SELECT destination, CAST((sent_at - ?) / 60 AS INTEGER) AS minute, COUNT(*)"
                " FROM deliveries WHERE sent_at >= ? AND state='sent' GROUP BY destination, minute",
                (start, start)).fetchall()
        for dest, minute, n in rows:
            out.setdefault(dest, [0] * minutes)[min(int(minute), minutes - 1)] += n
        return out

    def dead_letters(self, limit: int = 20) -> list[dict]:
        """The latest dead-lettered deliveries: UID, destination, attempts, error, when."""
        with self.lock:
            rows = self.db.execute(
                "SELECT sop_instance_uid, destination, attempts, last_error, next_attempt_at"
                " FROM deliveries WHERE state='dead' ORDER BY next_attempt_at DESC LIMIT ?",
                (limit,)).fetchall()
        return [{"sop_instance_uid": u, "destination": d, "attempts": a, "last_error": e, "at": at}
                for u, d, a, e, at in rows]

    def destination_health(self) -> dict[str, dict]:
        """Per destination that ever went down: ``{"up", "since", "message"}`` from its last
        ``destination_down`` / ``destination_up`` event."""
        with self.lock:
            rows = self.db.execute(
                "SELECT destination, kind, at, message FROM events WHERE id IN (SELECT MAX(id) FROM"
                " events WHERE kind IN ('destination_down', 'destination_up') GROUP BY destination)"
            ).fetchall()
        return {d: {"up": kind == "destination_up", "since": at, "message": msg}
                for d, kind, at, msg in rows}

    def last_activity(self) -> float | None:
        """When the router last received, sent or logged anything."""
        with self.lock:
            times = self.db.execute(
                "SELECT (SELECT received_at FROM instances ORDER BY id DESC LIMIT 1),"
                " (SELECT MAX(sent_at) FROM deliveries), (SELECT MAX(at) FROM events)").fetchone()
        return max((t for t in times if t is not None), default=None)

    # ---- the review queue --------------------------------------------------------------------
    def review_items(self, state: str | None = "pending", reason: str | None = None,
                     limit: int = 100, offset: int = 0) -> list[ReviewRow]:
        """Review queue entries, oldest first (``state``/``reason`` ``None``: any)."""
        if not self.has_reviews:
            return []
        where, args = [], []
        for column, value in (("r.state", state), ("r.reason", reason)):
            if value is not None:
                where.append(f"{column}=?")
                args.append(value)
        sql = _REVIEW_SELECT + (" WHERE " + " AND ".join(where) if where else "")
        with self.lock:
            rows = self.db.execute(sql + " ORDER BY r.instance_id LIMIT ? OFFSET ?",
                                   (*args, limit, offset)).fetchall()
        return [_review(r) for r in rows]

    def review(self, instance_id: int) -> ReviewRow | None:
        if not self.has_reviews:
            return None
        with self.lock:
            row = self.db.execute(_REVIEW_SELECT + " WHERE r.instance_id=?", (instance_id,)).fetchone()
        return _review(row) if row else None

    def settle_review(self, instance_id: int, verdict: str, labels: dict[str, str] | None, by: str,
                      reroute: tuple[Prediction, str, list[str]] | None = None,
                      resend_duplicates: bool = False) -> tuple[ReviewRow, int]:
        """Settle a pending review in one durable transaction; the first to settle it wins.

        ``reroute`` (corrected prediction, rule, destinations): the instance takes the corrected
        record and rule, and is queued for those destinations (those that have it already are
        skipped, as for a duplicate). Returns (the settled row, deliveries queued). Raises
        :class:`ReviewNotFound`, or :class:`ReviewSettled` when it was settled before.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {verdict!r}")
        now = time.time()
        queued = 0
        with self._tx() as db:  # BEGIN IMMEDIATE: no other writer between the check and the update
            found = db.execute("SELECT state FROM reviews WHERE instance_id=?", (instance_id,)).fetchone()
            if found is None:
                raise ReviewNotFound(instance_id)
            if found[0] != "pending":
                raise ReviewSettled(_review(db.execute(_REVIEW_SELECT + " WHERE r.instance_id=?",
                                                       (instance_id,)).fetchone()))
            db.execute("UPDATE reviews SET state='settled', verdict=?, labels=?, settled_by=?,"
                       " settled_at=? WHERE instance_id=?",
                       (verdict, json.dumps(labels) if labels is not None else None, by, now, instance_id))
            if reroute is not None:
                prediction, rule, destinations = reroute
                uid = db.execute("SELECT sop_instance_uid FROM instances WHERE id=?",
                                 (instance_id,)).fetchone()[0]
                db.execute("UPDATE instances SET state='classified', prediction=?, rule=?, decided_at=?"
                           " WHERE id=?", (_json(prediction), rule, now, instance_id))
                touched = {instance_id}
                queued = self._queue_deliveries(db, instance_id, uid, destinations, now,
                                                resend_duplicates, touched)
                self._finish(db, touched)
            row = _review(db.execute(_REVIEW_SELECT + " WHERE r.instance_id=?", (instance_id,)).fetchone())
        return row, queued

    def labelled(self) -> list[tuple[str, str | None, dict[str, str]]]:
        """(spool path, patient hash, labels) of every settled review but "not medical" ones."""
        if not self.has_reviews:
            return []
        with self.lock:
            rows = self.db.execute(
                "SELECT i.spool_path, i.patient_hash, r.labels FROM reviews r JOIN instances i"
                " ON i.id = r.instance_id WHERE r.state='settled' AND r.verdict != 'not_medical'"
                " ORDER BY r.settled_at, r.instance_id").fetchall()
        return [(p, h, json.loads(labels)) for p, h, labels in rows]

    def deliveries_of(self, sop_instance_uid: str) -> dict[str, str]:
        with self.lock:
            return dict(self.db.execute("SELECT destination, state FROM deliveries WHERE"
                                        " sop_instance_uid=?", (sop_instance_uid,)))


def _insert_instance(db: sqlite3.Connection, spool_path: str, tags: dict, source: str,
                     patient_hash: str | None) -> int:
    cur = db.execute(
        "INSERT INTO instances (sop_instance_uid, series_instance_uid, sop_class_uid,"
        " transfer_syntax, spool_path, source, patient_hash, tags, state, received_at)"
        " VALUES (?,?,?,?,?,?,?,?,'received',?)",
        (tags.get("SOPInstanceUID", ""), tags.get("SeriesInstanceUID"),
         tags.get("SOPClassUID"), tags.get("TransferSyntaxUID"), str(spool_path), source,
         patient_hash, json.dumps(tags), time.time()))
    return int(cur.lastrowid)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` under the journal lock (rollback on error).

    ``durable=False`` commits without an fsync (``synchronous=NORMAL``, WAL): for changes a
    crash may lose because the restart redoes them (a decision, a claim). The WAL is
    sequential, so the next durable commit's fsync makes them durable too.
    """

    def __init__(self, journal: Journal, durable: bool = True):
        self.journal = journal
        self.durable = durable

    def __enter__(self) -> sqlite3.Connection:
        self.journal.lock.acquire()
        try:
            if not self.durable:
                self.journal.db.execute("PRAGMA synchronous=NORMAL")
            self.journal.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._restore()
            raise
        return self.journal.db

    def _restore(self) -> None:
        try:
            if not self.durable:
                self.journal.db.execute("PRAGMA synchronous=FULL")
        finally:
            self.journal.lock.release()

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.journal.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._restore()
