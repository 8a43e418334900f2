"""The journal's state machine: dedup per (SOPInstanceUID, destination), in-flight reset, dead-letter."""
from __future__ import annotations

import sqlite3

import pytest

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


# ---- the review queue ----------------------------------------------------------------------------
def record(region: str, score: float, threshold: float = 0.5):
    """A real record (``make_prediction``) whose region task scores ``score``."""
    import numpy as np

    from radroute.inference.record import make_prediction

    classes = ["head", "thorax", "abdomen"]
    rest = (1 - score) / 2
    probs = np.array([score if c == region else rest for c in classes])
    return make_prediction({"region": probs}, {"region": classes}, {"region": threshold},
                           {"region": {"head": "head", "thorax": "chest", "abdomen": "abdomen"}})


def test_review_queue_keeps_files_and_is_never_pruned(tmp_path):
    from radroute.inference.record import Prediction

    j, spool = Journal(tmp_path), Spool(tmp_path)
    ids = [receive(j, spool, {**TAGS, "SOPInstanceUID": f"1.2.3.{n}"}) for n in range(5)]
    unsure, confident, disagreeing, failed = record("head", 0.4), record("head", 0.9), record("thorax", 0.9), \
        Prediction.failed("x", {"type": "not_dicom", "message": "no"})
    items = [(ids[0], "1.2.3.0", unsure, "review", ["a"], None),
             (ids[1], "1.2.3.1", confident, "r", ["a"], None),
             (ids[2], "1.2.3.2", disagreeing, "r", ["a"], {"field": "body_part", "tag": "spine"}),
             (ids[3], "1.2.3.3", failed, "review", ["a"], None)]
    j.record_decisions(items, review_queue=True)
    j.record_decisions([(ids[4], "1.2.3.4", unsure, "review", ["a"], None)])  # no queue: no review
    assert [(r.id, r.reason) for r in j.review_items()] == [(ids[0], "abstained"), (ids[2], "disagreement")]
    assert j.review_items(reason="disagreement")[0].prediction.task("region").label == "thorax"
    rows = j.claim("a", 10)
    done = j.complete("a", rows, [])
    reviewed = {j.review(i).spool_path for i in (ids[0], ids[2])}
    assert len(done) == 3 and not reviewed & set(done)  # reviewed files are not handed out for removal
    assert j.status()["instances"] == {"done": 5} and j.status()["review"] == {"pending": 2}
    j.prune(-1)
    assert {r.id for r in j.review_items(state=None)} == {ids[0], ids[2]}
    assert j.status()["instances"] == {"done": 2}
    j.close()


def test_settling_is_one_winner_across_connections(tmp_path):
    """Two journals (as two processes) settle the same entry at once: one wins."""
    import threading

    from radroute.routing.journal import ReviewNotFound, ReviewSettled

    j, spool = Journal(tmp_path), Spool(tmp_path)
    inst = receive(j, spool)
    j.record_decisions([(inst, "1.2.3.4", record("head", 0.4), "review", ["review"], None)], review_queue=True)
    others = [Journal(tmp_path) for _ in range(4)]
    barrier, outcomes = threading.Barrier(len(others)), []

    def settle(journal: Journal, region: str) -> None:
        barrier.wait()
        try:
            outcomes.append(journal.settle_review(inst, "corrected", {"region": region}, region)[0].labels)
        except ReviewSettled as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=settle, args=(o, r)) for o, r in zip(others, ["head", "thorax"] * 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    won = [o for o in outcomes if isinstance(o, dict)]
    assert len(won) == 1 and sum(isinstance(o, ReviewSettled) for o in outcomes) == 3
    row = j.review(inst)
    assert row.labels == won[0] and row.settled_by == won[0]["region"] and row.state == "settled"
    with pytest.raises(ReviewNotFound):
        j.settle_review(12345, "accepted", {}, "x")
    for o in others:
        o.close()
    j.close()


def test_settling_can_route_again(tmp_path):
    j, spool = Journal(tmp_path), Spool(tmp_path)
    inst = receive(j, spool)
    j.record_decisions([(inst, "1.2.3.4", record("head", 0.4), "review", ["review", "b"], None)], review_queue=True)
    j.complete("review", j.claim("review", 10), [])
    j.complete("b", j.claim("b", 10), [])
    corrected = record("abdomen", 1.0)
    row, queued = j.settle_review(inst, "corrected", {"region": "abdomen"}, "ana",
                                  reroute=(corrected, "abdomen", ["a", "b"]))
    assert queued == 1 and row.rule == "abdomen"  # b has it already: not sent twice
    assert row.prediction.task("region").label == "head"  # the queue keeps the model's record
    (delivery,) = j.claim("a", 10)
    assert delivery.prediction.task("region").label == "abdomen" and delivery.rule == "abdomen"
    assert j.complete("a", [delivery], []) == []  # done, but the labelled example stays
    assert j.status()["instances"] == {"done": 1}
    assert j.labelled() == [(row.spool_path, None, {"region": "abdomen"})]
    j.close()


def test_a_version_1_journal_is_read_then_upgraded(tmp_path):
    j = Journal(tmp_path)
    j.db.execute("DROP TABLE reviews")
    j.db.execute("PRAGMA user_version=1")
    j.close()
    ro = Journal(tmp_path, readonly=True)
    assert not ro.has_reviews and ro.status()["review"] == {} and ro.review_items() == []
    ro.close()
    rw = Journal(tmp_path)
    assert rw.has_reviews and rw.db.execute("PRAGMA user_version").fetchone()[0] == 2
    rw.close()
