"""Settling reviews with the router running: re-routing with the corrected labels, and
concurrent corrections of one entry over real HTTP (one wins, the rest get 409, nothing breaks)."""
from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pydicom
import pytest

from radroute.routing.config import load_config
from radroute.routing.journal import Journal
from radroute.routing.service import RouterService
from tests.helpers import free_port, need_data
from tests.routing.peers import distinct_copies
from tests.web.conftest import AUTH, need_web_extra, router_config

need_web_extra()
import httpx  # noqa: E402

from radroute.web.app import create_app  # noqa: E402
from radroute.web.review import ReviewQueue  # noqa: E402

ABDOMEN_RULE = ('\n[[rules]]\nname = "abdomen"\ndestinations = ["abdomen"]\n'
                'all = [ { task = "region", label = "abdomen" } ]\n')


def wait_for(check, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


@pytest.fixture()
def rerouting(fresh_queue, tiny_model):
    """The queue's router with route_after_review and a rule for region=abdomen, running."""
    config = router_config(fresh_queue.root, tiny_model, router="route_after_review = true", rules=ABDOMEN_RULE)
    cfg = load_config(config)
    service = RouterService(cfg, start_sources=False).start()
    yield cfg, service
    service.stop()


def test_settled_instances_are_routed_again(rerouting):
    cfg, service = rerouting
    queue = ReviewQueue(cfg, Journal(cfg.spool))
    abstained = queue.items(reason="abstained")
    first, second, third = abstained[:3]

    row = queue.settle(first.id, by="test", labels={"region": "abdomen"})
    assert row.rule == "abdomen" and row.labels["region"] == "abdomen"
    target = cfg.spool.parent / "out/abdomen/abdomen" / f"{first.sop_instance_uid}.dcm"
    wait_for(target.exists)  # the router's delivery worker picked the new delivery up
    assert target.read_bytes() == Path(first.spool_path).read_bytes()
    record = queue.journal.review(first.id)
    assert record.prediction.task("region").abstained  # the model's record is kept for the page
    assert pydicom.dcmread(target).SOPInstanceUID == first.sop_instance_uid

    row = queue.settle(second.id, by="test", accept=True)  # the labels the model gave, now certain
    expected = "abdomen" if second.prediction.task("region").label == "abdomen" else "rest"
    assert row.rule == expected
    row = queue.settle(third.id, by="test", not_medical=True)
    assert row.rule == "review" and row.labels is None  # not routed again
    assert service.wait_idle(30)
    st = service.journal.status()
    assert st["deliveries"]["review"] == {"sent": 5}
    assert st["instances"] == {"done": 6} and st["review"] == {"pending": 3, "settled": 3}
    assert all(Path(r.spool_path).is_file() for r in queue.items(state=None))  # kept: labelled examples
    queue.journal.close()


def test_concurrent_corrections_one_wins(rerouting, fresh_queue):
    """Eight clients settle the same entry at once over HTTP while the router ingests more."""
    import uvicorn

    cfg, service = rerouting
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(cfg), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30)
    more = distinct_copies([need_data("dicom_zoo", "files", "pydicom", "CT_small.dcm")], fresh_queue.root / "more", 6)
    try:
        url = f"http://127.0.0.1:{port}"
        items = httpx.get(url + "/api/review", headers=AUTH).json()
        target = items[0]["id"]
        labels = ["head", "thorax", "abdomen", "head", "thorax", "abdomen", "head", "thorax"]
        barrier = threading.Barrier(len(labels) + 1)
        results: list[tuple[str, httpx.Response]] = []

        def settle(region: str) -> None:
            with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
                barrier.wait()
                results.append((region, client.post(f"/api/review/{target}", json={"labels": {"region": region}})))

        def ingest() -> None:
            barrier.wait()
            for f in more:
                service.ingest_file(f, "test")

        threads = [threading.Thread(target=settle, args=(r,)) for r in labels]
        threads.append(threading.Thread(target=ingest))
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        codes = sorted(r.status_code for _, r in results)
        assert codes == [200] + [409] * (len(labels) - 1)
        winner_region, winner = next((reg, r) for reg, r in results if r.status_code == 200)
        final = httpx.get(f"{url}/api/review/{target}", headers=AUTH).json()
        assert final["labels"]["region"] == winner_region == winner.json()["labels"]["region"]
        assert all(r.json()["item"]["labels"] == final["labels"] for _, r in results if r.status_code == 409)
        assert service.wait_idle(60)
    finally:
        server.should_exit = True
        thread.join(30)
    db = sqlite3.connect(cfg.spool / "journal.sqlite")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM reviews WHERE state='settled'").fetchone() == (1,)
        assert db.execute("SELECT COUNT(*) FROM instances").fetchone() == (6 + len(more),)
    finally:
        db.close()
