"""The REST API and pages in-process (FastAPI's test client) over a queue the real router made:
credentials on every route, the status JSON, the queue, settling (404, 409, 422), labels.csv,
sessions and CSRF, and no patient name or ID anywhere."""
from __future__ import annotations

import base64
import csv
import io
import json
import logging
import os

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from radroute.routing.journal import Journal
from tests.web.conftest import AUTH, PATIENT_ID, PATIENT_NAME, TOKEN, need_web_extra, web_section

need_web_extra()
from fastapi.testclient import TestClient  # noqa: E402

from radroute.web.app import create_app  # noqa: E402
from radroute.web.auth import SESSION_COOKIE, hash_password  # noqa: E402

ITEM_FIELDS = {"id", "sop_instance_uid", "modality", "reason", "predictions", "thumbnail_url"}


def pending(client, **params) -> list[dict]:
    res = client.get("/api/review", params=params)
    assert res.status_code == 200, res.text
    return res.json()


def test_every_route_but_healthz_needs_credentials(client):
    app_paths = {r.path for r in client.app.routes}
    assert {"/", "/review", "/api/status", "/api/review", "/api/labels.csv", "/openapi.json"} <= app_paths
    probes = [("GET", "/"), ("GET", "/review"), ("GET", "/api/status"), ("GET", "/api/review"),
              ("GET", "/api/review/1"), ("GET", "/api/review/1/thumbnail.png"), ("POST", "/api/review/1"),
              ("GET", "/api/labels.csv"), ("GET", "/openapi.json"), ("POST", "/review/1"),
              ("POST", "/logout"), ("GET", "/no/such/page"), ("DELETE", "/api/review/1")]
    wrong = [{"Authorization": ""}, {"Authorization": "Bearer wrong-token-0123456789"},
             {"Authorization": f"bearer {TOKEN}x"}, {"Authorization": "Basic " + base64.b64encode(b"x:y").decode()},
             {"Authorization": f"Token {TOKEN}"},
             {"Authorization": "", "Cookie": f"{SESSION_COOKIE}=forged.123.abc.def"}]
    for method, path in probes:
        for headers in wrong:
            res = client.request(method, path, headers=headers, json={"accept": True})
            assert res.status_code == 401, (method, path, headers, res.status_code)
    res = client.get("/api/status", headers={"Authorization": ""})
    assert res.headers["WWW-Authenticate"].startswith("Bearer") and res.json() == {"detail": "authentication required"}
    page = client.get("/review", headers={"Authorization": "", "Accept": "text/html"})
    assert page.status_code == 401 and 'action="/login"' in page.text  # the login form
    assert client.get("/healthz", headers={"Authorization": ""}).json() == {"status": "ok"}
    assert client.get("/api/status").status_code == 200  # the client's own (right) token


def test_status_is_the_status_command_json(client, fresh_queue):
    from radroute.cli import app

    res = CliRunner().invoke(app, ["status", "--json", "-c", str(fresh_queue.config)])
    assert res.exit_code == 0, res.output
    api = client.get("/api/status").json()
    assert api == json.loads(res.stdout)
    assert api["review"] == {"pending": 6} and api["disagreements"] == 1
    text = CliRunner().invoke(app, ["status", "-c", str(fresh_queue.config)]).stdout
    assert "review pending 6, settled 0" in " ".join(text.split())
    html = client.get("/", headers={"Accept": "text/html"})
    assert html.status_code == 200 and "Router status" in html.text and "<b>review</b>" in html.text


def test_the_queue_lists_abstained_and_disagreeing_instances(client):
    items = pending(client)
    assert len(items) == 6 and all(ITEM_FIELDS <= set(i) for i in items)
    assert [i["reason"] for i in items].count("disagreement") == 1
    assert {i["id"] for i in pending(client, reason="abstained")} | {
        i["id"] for i in pending(client, reason="disagreement")} == {i["id"] for i in items}
    for item in items:
        assert isinstance(item["id"], int) and item["thumbnail_url"] == f"/api/review/{item['id']}/thumbnail.png"
        assert set(item["predictions"]) == {"modality", "region"} and item["state"] == "pending"
        assert item["modality"] in ("CT", "MR") and item["labels"] is None
    disagreeing = pending(client, reason="disagreement")[0]
    assert disagreeing["disagreement"]["tag_value"] == "CSPINE" and not disagreeing["predictions"]["region"]["abstained"]
    assert all(i["predictions"]["region"]["abstained"] for i in pending(client, reason="abstained"))
    assert client.get("/api/review", params={"reason": "bogus"}).status_code == 422
    assert client.get(f"/api/review/{items[0]['id']}").json() == items[0]


def test_thumbnails_are_pngs_and_cached(client, fresh_queue):
    item = pending(client)[0]
    res = client.get(item["thumbnail_url"])
    assert res.status_code == 200 and res.headers["content-type"] == "image/png"
    png = Image.open(io.BytesIO(res.content))
    assert png.mode == "L" and max(png.size) == 256
    assert len(np.unique(np.asarray(png))) > 16  # windowed, not blank
    assert len(list((fresh_queue.root / "spool/web-cache/thumbnails").rglob("*.png"))) == 1
    assert client.get(item["thumbnail_url"]).content == res.content
    assert client.get("/api/review/999/thumbnail.png").status_code == 404


def test_settling(client, fresh_queue):
    items = pending(client)
    first, second, third = (i["id"] for i in items[:3])
    assert client.post("/api/review/999", json={"accept": True}).status_code == 404
    res = client.post(f"/api/review/{first}", json={"labels": {"region": "pelvis"}})
    assert res.status_code == 422
    assert res.json()["allowed"] == {"modality": ["CT", "MR"], "region": ["head", "thorax", "abdomen"]}
    assert client.post(f"/api/review/{first}", json={"labels": {"view": "frontal"}}).status_code == 422
    for bad in ({}, {"accept": False}, {"accept": True, "not_medical": True}, {"labels": {}}, {"bogus": 1}):
        assert client.post(f"/api/review/{first}", json=bad).status_code == 422, bad

    res = client.post(f"/api/review/{first}", json={"labels": {"region": "abdomen"}})
    assert res.status_code == 200
    done = res.json()
    predicted = items[0]["predictions"]
    assert done["state"] == "settled" and done["settled_by"] == "token"
    assert done["labels"] == {"modality": predicted["modality"]["label"], "region": "abdomen"}
    assert done["verdict"] == ("accepted" if predicted["region"]["label"] == "abdomen" else "corrected")
    assert done["rule"] == "review"  # not routed again without route_after_review
    again = client.post(f"/api/review/{first}", json={"accept": True})
    assert again.status_code == 409 and again.json()["item"]["labels"] == done["labels"]

    accepted = client.post(f"/api/review/{second}", json={"accept": True}).json()
    assert accepted["verdict"] == "accepted"
    assert accepted["labels"] == {t: p["label"] for t, p in items[1]["predictions"].items()}
    assert client.post(f"/api/review/{third}", json={"not_medical": True}).json()["verdict"] == "not_medical"
    assert {i["id"] for i in pending(client)} == {i["id"] for i in items[3:]}
    assert {i["id"] for i in pending(client, state="settled")} == {first, second, third}

    res = client.get("/api/labels.csv")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(res.text)))
    assert rows[0] == ["path", "patient_id", "modality", "region"]
    journal = Journal(fresh_queue.cfg.spool, readonly=True)
    expected = {journal.review(i).spool_path: journal.review(i) for i in (first, second)}
    journal.close()
    assert {r[0] for r in rows[1:]} == set(expected)  # "not medical" is left out
    for path, patient, modality, region in rows[1:]:
        assert os.path.isabs(path) and os.path.isfile(path)
        assert patient == expected[path].patient_hash and patient.startswith("sha256:")
        assert {"modality": modality, "region": region} == expected[path].labels


def test_reviewed_instances_keep_their_spool_files(fresh_queue):
    """keep_delivered is false: delivered instances' spool files are gone, queued ones stay."""
    journal = Journal(fresh_queue.cfg.spool, readonly=True)
    try:
        reviewed = {r.spool_path for r in journal.review_items(state=None)}
        everything = journal.spool_paths()
    finally:
        journal.close()
    assert len(reviewed) == 6 and all(os.path.isfile(p) for p in reviewed)
    assert [p for p in everything - reviewed if os.path.exists(p)] == []  # the one "rest" instance


def test_sessions_and_csrf(fresh_queue):
    with TestClient(create_app(fresh_queue.cfg)) as client:
        res = client.post("/login", data={"name": "", "password": "not-the-token"}, follow_redirects=False)
        assert res.status_code == 401 and "wrong name, password or token" in res.text
        res = client.post("/login", data={"password": TOKEN, "next": "https://evil.example/x"},
                          follow_redirects=False)
        assert res.status_code == 303 and res.headers["location"] == "/"  # no open redirect
        cookie = res.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        page = client.get("/review", headers={"Accept": "text/html"})
        assert page.status_code == 200 and "Content-Security-Policy" in page.headers
        csrf = page.text.split('name="csrf-token" content="')[1].split('"')[0]
        item = pending(client)[0]["id"]
        assert client.post(f"/api/review/{item}", json={"accept": True}).status_code == 403
        assert client.post(f"/api/review/{item}", json={"accept": True},
                           headers={"X-CSRF-Token": "0" * 64}).status_code == 403
        assert client.post(f"/review/{item}", data={"action": "accept"}, follow_redirects=False).status_code == 403
        res = client.post(f"/review/{item}", data={"action": "accept", "csrf": csrf}, follow_redirects=False)
        assert res.status_code == 303
        other = pending(client)[0]["id"]
        res = client.post(f"/api/review/{other}", json={"not_medical": True}, headers={"X-CSRF-Token": csrf})
        assert res.status_code == 200
        assert client.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
        client.cookies.clear()
        assert client.get("/api/review").status_code == 401


def test_named_users(fresh_queue, tmp_path):
    users = f'\n[[web.users]]\nname = "ana"\npassword_hash = "{hash_password("s3cret pass", iterations=100_000)}"\n'
    text = fresh_queue.config.read_text().replace(web_section(), f"\n[web]\n{users}")
    assert "token =" not in text
    fresh_queue.config.write_text(text)
    from radroute.routing.config import load_config

    with TestClient(create_app(load_config(fresh_queue.config))) as client:
        basic = "Basic " + base64.b64encode(b"ana:s3cret pass").decode()
        assert client.get("/api/status", headers={"Authorization": basic}).status_code == 200
        wrong = "Basic " + base64.b64encode(b"ana:wrong").decode()
        assert client.get("/api/status", headers={"Authorization": wrong}).status_code == 401
        assert client.get("/api/status", headers=AUTH).status_code == 401  # no token configured
        res = client.post("/login", data={"name": "ana", "password": "s3cret pass"}, follow_redirects=False)
        assert res.status_code == 303
        first = client.get("/api/review").json()[0]["id"]
        csrf = client.app.state.auth.csrf_token(client.cookies[SESSION_COOKIE])
        res = client.post(f"/api/review/{first}", json={"accept": True}, headers={"X-CSRF-Token": csrf})
        assert res.json()["settled_by"] == "ana"


def test_no_patient_name_or_id_in_pages_api_or_logs(client, caplog):
    from radroute.routing.logs import JsonFormatter

    with caplog.at_level(logging.DEBUG, logger="radroute"):
        items = pending(client)
        bodies = [client.get(p, headers={"Accept": "text/html"}).text for p in ("/", "/review", "/review?state=settled")]
        bodies += [json.dumps(items), client.get("/api/status").text]
        client.post(f"/api/review/{items[0]['id']}", json={"accept": True})
        bodies += [client.get("/api/labels.csv").text, client.get("/review?state=settled").text]
    logged = [JsonFormatter().format(r) for r in caplog.records]
    assert any("review_settled" in line for line in logged)
    for text in bodies + logged:
        assert PATIENT_NAME not in text and PATIENT_ID not in text
        assert "Testpatient" not in text and "Hieronymus" not in text
