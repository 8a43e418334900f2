"""The pages in headless Chromium: the router and ``radroute web`` run as processes on free
loopback ports; with ``[classifier] threshold = 0.999999`` real dicom_zoo instances abstain.
A person signs in, sees the thumbnails, settles entries; the correction is in labels.csv and,
with ``route_after_review``, at the destination its labels route it to."""
from __future__ import annotations

import csv
import io
import os
import shutil
import time
from pathlib import Path

import pytest

from tests.helpers import free_port, need_data
from tests.routing.peers import RouterProcess, distinct_copies
from tests.web.conftest import AUTH, TOKEN, need_web_extra

need_web_extra()
import httpx  # noqa: E402

from tests.web.processes import WebProcess, keep_artefact  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
#: CT and MR (ct-mr-region) and a chest radiograph (chest-view)
FILES = [("pydicom", "CT_small.dcm"), ("pydicom", "MR_small.dcm"), ("fo-dicom", "GH064_mr_head_survey.dcm"),
         ("pydicom", "examples_overlay.dcm"), ("fo-dicom", "CR-MONO1-10-chest.dcm")]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chromium():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright (Python package) not installed")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def config_text(tmp_path: Path, inbox: Path, web_port: int) -> str:
    return f"""
[router]
spool = "{tmp_path / 'spool'}"
review_destination = "review"
route_after_review = true

[watch]
path = "{inbox}"
poll_seconds = 0.2

[classifier]
model = "auto"
backend = "onnx"
threads = 1
batch_size = 8
max_wait_ms = 20
threshold = 0.999999

[web]
token = "{TOKEN}"
port = {web_port}

[[destinations]]
name = "review"
type = "folder"
path = "{tmp_path / 'out/review'}"

[[destinations]]
name = "pelvis"
type = "folder"
path = "{tmp_path / 'out/pelvis'}"

[[destinations]]
name = "rest"
type = "folder"
path = "{tmp_path / 'out/rest'}"

[[rules]]
name = "pelvis"
destinations = ["pelvis"]
all = [ {{ body_part = "pelvis" }} ]

[[rules]]
name = "rest"
default = true
destinations = ["rest"]
"""


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_review_in_the_browser(tmp_path, chromium):
    files = distinct_copies([need_data("dicom_zoo", "files", *f) for f in FILES], tmp_path / "src")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    port = free_port()
    config = tmp_path / "router.toml"
    config.write_text(config_text(tmp_path, inbox, port))
    api = httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=30)
    with RouterProcess(config, tmp_path / "router.log"), WebProcess(config, port, tmp_path / "web.log") as web:
        for f in files:
            shutil.copy(f, inbox / f.name)
        items = wait_for(lambda: (lambda r: r if len(r) == len(files) else None)(api.get("/api/review").json()),
                         120, f"{len(files)} review entries")
        assert {i["reason"] for i in items} == {"abstained"}

        page = chromium.new_page(viewport={"width": 1280, "height": 900})
        page.goto(web.url + "/review")
        assert page.locator("form.login").is_visible()  # signed out: the login form (401)
        page.screenshot(path=tmp_path / "login.png")
        keep_artefact(tmp_path / "login.png")
        page.fill("#password", TOKEN)
        page.click("form.login button[type=submit]")
        page.wait_for_url("**/review")
        assert page.locator("article.card").count() == len(files)

        images = page.locator(".thumb img")
        for i in range(images.count()):
            images.nth(i).scroll_into_view_if_needed()
        page.wait_for_function("() => [...document.querySelectorAll('.thumb img')]"
                               ".every(img => img.complete && img.naturalWidth > 0)", timeout=60_000)
        widths = page.eval_on_selector_all(".thumb img", "imgs => imgs.map(i => i.naturalWidth)")
        assert len(widths) == len(files) and min(widths) > 0
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=tmp_path / "review.png", full_page=True)
        keep_artefact(tmp_path / "review.png")
        if os.environ.get("RADROUTE_UPDATE_DOCS_SCREENSHOTS"):
            shutil.copy(tmp_path / "review.png", Path(__file__).resolve().parents[2] / "docs/images/review.png")

        # correct one CT/MR entry's region to genitourinary (body part pelvis): routed to "pelvis"
        target = next(i for i in items if "region" in (i["predictions"] or {}))
        card = page.locator(f"#item-{target['id']}")
        card.locator("select[data-task=region]").select_option("genitourinary")
        card.locator("button[value=labels]").click()
        card.locator(".note").wait_for()
        assert "Corrected" in card.locator(".note").inner_text()
        # accept another, mark a third "not a medical image"
        others = [i for i in items if i["id"] != target["id"]]
        page.locator(f"#item-{others[0]['id']} button[value=accept]").click()
        page.locator(f"#item-{others[1]['id']} button[value=not_medical]").click()
        page.locator(f"#item-{others[1]['id']} .note").wait_for()
        page.locator(f"#item-{others[0]['id']} .note").wait_for()
        page.screenshot(path=tmp_path / "review-settled.png", full_page=True)
        keep_artefact(tmp_path / "review-settled.png")

        rows = list(csv.DictReader(io.StringIO(page.request.get(web.url + "/api/labels.csv").text())))
        by_path = {r["path"]: r for r in rows}
        assert len(rows) == 2  # the corrected and the accepted one; "not medical" is left out
        corrected = api.get(f"/api/review/{target['id']}").json()
        assert corrected["labels"]["region"] == "genitourinary" and corrected["verdict"] == "corrected"
        assert corrected["settled_by"] == "token" and corrected["rule"] == "pelvis"
        assert any(r["region"] == "genitourinary" and Path(r["path"]).is_file() for r in by_path.values())

        delivered = wait_for(lambda: list((tmp_path / "out/pelvis").glob("*.dcm")), 30, "the re-routed instance")
        assert [p.name for p in delivered] == [f"{target['sop_instance_uid']}.dcm"]

        page.goto(web.url + "/")
        assert "Router status" in page.inner_text("h1")
        assert page.locator("table").first.inner_text().count("pelvis") >= 1
        page.screenshot(path=tmp_path / "status.png", full_page=True)
        keep_artefact(tmp_path / "status.png")
        page.close()
