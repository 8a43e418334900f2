"""One delivery worker per destination: its own queue (journal rows), retries, health checks.

A per-instance failure (the destination answered with an error) is retried after
``backoff_seconds * 2**attempts`` (capped at ``max_backoff_seconds``) and goes to the
dead-letter state after ``max_attempts`` failures. An unreachable destination counts no
attempts: the worker releases the batch, probes with C-ECHO / HTTP with the same exponential
backoff, and resumes when the probe answers, so instances queue while it is down.
"""
from __future__ import annotations

import threading
import time

from radroute.routing.destinations import Destination, Unavailable
from radroute.routing.journal import Journal
from radroute.routing.logs import log_event
from radroute.routing.spool import Spool


class DeliveryWorker:
    def __init__(self, destination: Destination, journal: Journal, spool: Spool,
                 keep_delivered: bool = False):
        self.dest = destination
        self.cfg = destination.cfg
        self.journal = journal
        self.spool = spool
        self.keep_delivered = keep_delivered
        self.wake = threading.Event()
        self._stop = threading.Event()
        self.healthy = True
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name=f"radroute-deliver-{self.cfg.name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout)
        self.dest.close()

    def retry_delay(self, attempts: int) -> float:
        return min(self.cfg.max_backoff_seconds, self.cfg.backoff_seconds * 2 ** max(0, attempts - 1))

    def _verify_uncertain(self) -> bool:
        """Deliveries in flight at a crash: ask the destination which it already holds, so
        those are not sent twice. Returns ``False`` while the destination cannot answer."""
        rows = self.journal.uncertain(self.cfg.name)
        if not rows:
            return True
        try:
            held = self.dest.holds(rows)
        except Unavailable:
            return False
        present = [r for r in rows if held.get(r.sop_instance_uid)]
        absent = [r for r in rows if not held.get(r.sop_instance_uid)]
        finished = self.journal.resolve_uncertain(self.cfg.name, present, absent)
        if not self.keep_delivered:
            for path in finished:
                self.spool.remove(path)
        log_event("uncertain_verified", destination=self.cfg.name, held=len(present),
                  resend=len(absent), unknown=sum(held.get(r.sop_instance_uid) is None for r in rows))
        return True

    def _run(self) -> None:
        down_since, probe_delay = 0.0, self.cfg.backoff_seconds
        verified = False
        while not self._stop.is_set():
            if not verified and self.healthy:
                verified = self._verify_uncertain()
                if not verified:
                    self.healthy, down_since = False, time.time()
                    continue
            if not self.healthy:
                try:
                    up = self.dest.check()
                except Exception:  # noqa: BLE001 - a failing probe means "still down"
                    up = False
                if not up:
                    self._stop.wait(min(probe_delay, self.cfg.health_check_seconds))
                    probe_delay = min(probe_delay * 2, self.cfg.max_backoff_seconds)
                    continue
                self.healthy, probe_delay = True, self.cfg.backoff_seconds
                log_event("destination_up", destination=self.cfg.name,
                          down_seconds=round(time.time() - down_since, 1))
                self.journal.add_event("destination_up", "destination answers again", self.cfg.name)
            self.wake.clear()  # before looking: a wake-up from now on is not lost
            rows = self.journal.claim(self.cfg.name, self.cfg.batch_size)
            if not rows:
                if hasattr(self.dest, "idle"):
                    self.dest.idle()
                due = self.journal.next_due(self.cfg.name)
                self.wake.wait(1.0 if due is None else min(1.0, max(0.005, due - time.time())))
                continue
            self._deliver(rows)
            if not self.healthy:
                down_since = time.time()

    def _deliver(self, rows) -> None:
        try:
            results = self.dest.send(rows)
            problem = None
        except Unavailable as exc:
            results, problem = [], str(exc)
        except Exception as exc:  # noqa: BLE001 - unexpected: count it against the batch
            results = [(r, f"{type(exc).__name__}: {exc}") for r in rows]
            problem = None
        done = {r.sop_instance_uid for r, _ in results}
        released = [r for r in rows if r.sop_instance_uid not in done]
        sent = [r for r, err in results if err is None]
        failed = []
        now = time.time()
        for row, err in results:
            if err is None:
                continue
            attempts = row.attempts + 1
            next_at = None if attempts >= self.cfg.max_attempts else now + self.retry_delay(attempts)
            failed.append((row, err, next_at))
            log_event("delivery_dead" if next_at is None else "delivery_retry", level=30,
                      destination=self.cfg.name, sop_instance_uid=row.sop_instance_uid,
                      attempts=attempts, error=err)
        finished = self.journal.complete(self.cfg.name, sent, failed, released)
        self.sent += len(sent)
        for row in sent:
            log_event("delivered", level=10, destination=self.cfg.name,
                      sop_instance_uid=row.sop_instance_uid)
        if sent:
            log_event("delivered_batch", destination=self.cfg.name, count=len(sent))
        if not self.keep_delivered:
            for path in finished:
                self.spool.remove(path)
        if problem is not None:
            self.healthy = False
            log_event("destination_down", level=30, destination=self.cfg.name, error=problem,
                      released=len(released))
            self.journal.add_event("destination_down", problem, self.cfg.name)
