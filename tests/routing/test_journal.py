"""The journal's state machine: dedup per (SOPInstanceUID, destination), in-flight reset, dead-letter."""
from __future__ import annotations

import sqlite3

from radroute.routing.journal import Journal
from radroute.routing.spool import Spool
from tests.helpers import need_data

TAGS = {"SOPInstanceUID": "1.2.3.4", "SeriesInstanceUID": "1.2.3", "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2",
        "TransferSyntaxUID": "1.2.840.10008.1.2.1", "Modality": "CT"}


def receive(journal: Journal, spool: Spool, tags=TAGS) -> int:
    path = spool.store_file(need_data("dicom_zoo", "files", "pydicom", "CT_small.dcm"))
    return journal.add_instance(str(path), tags, "test", None)


def test_journal_is_wal_and_fully_synchronous(tmp_path):
    j = Journal(tmp_path)
    assert j.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert j.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    j.close()


def test_duplicates_are_not_sent_twice(tmp_path):
    j, spool = Journal(tmp_path), Spool(tmp_path)
    first = receive(j, spool)
    queued, _ = j.record_decisions([(first, "1.2.3.4", None, "r", ["a", "b"], None)])
    assert queued == 2
    rows = j.claim("a", 10)
    assert [r.sop_instance_uid for r in rows] == ["1.2.3.4"] and j.claim("a", 10) == []
    done = j.complete("a", rows, [])
    assert done == []  # still queued for b

    again = receive(j, spool)  # the modality sends the same instance again
    queued, _ = j.record_decisions([(again, "1.2.3.4", None, "r", ["a", "b"], None)])
    assert queued == 1  # only b, which has not had it yet, and now from the newer copy
    assert j.claim("a", 10) == []
    (row,) = j.claim("b", 10)
    assert row.instance_id == again
    done = j.complete("b", [row], [])
    st = j.status()
    assert st["deliveries"] == {"a": {"sent": 1}, "b": {"sent": 1}}
    assert st["instances"] == {"done": 2} and len(done) == 1
    j.close()


def test_in_flight_is_requeued_after_a_crash_and_failures_dead_letter(tmp_path):
    j, spool = Journal(tmp_path), Spool(tmp_path)
    inst = receive(j, spool)
    j.record_decisions([(inst, "1.2.3.4", None, "r", ["a"], None)])
    assert len(j.claim("a", 10)) == 1
    j.close()  # "crash" with the delivery in flight

    j = Journal(tmp_path)
    assert j.reset_in_flight() == 1
    assert j.claim("a", 10) == []  # uncertain: not sent again before the destination is asked
    (row,) = j.uncertain("a")
    j.resolve_uncertain("a", [], [row])  # the destination does not have it
    (row,) = j.claim("a", 10)
    j.complete("a", [], [(row, "C-STORE status 0xA700", None)])
    st = j.status()
    assert st["deliveries"] == {"a": {"dead": 1}}
    assert st["recent_errors"][0]["kind"] == "dead" and "0xA700" in st["recent_errors"][0]["message"]
    assert spool.orphans(j.spool_paths()) == []
    j.close()
    ro = sqlite3.connect(f"file:{tmp_path / 'journal.sqlite'}?mode=ro", uri=True)
    assert ro.execute("SELECT attempts FROM deliveries").fetchone()[0] == 1


def test_prune_forgets_only_finished_work(tmp_path):
    j, spool = Journal(tmp_path), Spool(tmp_path)
    first = receive(j, spool)
    j.record_decisions([(first, "1.2.3.4", None, "r", ["a"], None)])
    j.complete("a", j.claim("a", 10), [])
    second = receive(j, spool, {**TAGS, "SOPInstanceUID": "1.2.3.5"})
    j.record_decisions([(second, "1.2.3.5", None, "r", ["a"], None)])
    assert j.prune(3600) == 0  # nothing old enough
    assert j.prune(-1) == 1  # the sent one goes; the queued one stays
    assert j.status()["deliveries"] == {"a": {"queued": 1}}
    assert j.status()["instances"] == {"classified": 1}
    j.close()
