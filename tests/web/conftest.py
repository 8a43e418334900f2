"""Fixtures for the web page's tests: a router spool with a real review queue, the app, a client.

The queue is made by the real router (in-process, the tiny model of ``tests/routing``): its
region task abstains on most images; a second run with ``[classifier] threshold = 0.0`` makes a
confident prediction that disagrees with a file's BodyPartExamined.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from radroute.routing.config import RouterConfig, load_config
from radroute.routing.service import RouterService
from tests.helpers import need_data
from tests.routing.conftest import tiny_model  # noqa: F401  (a fixture)
from tests.routing.peers import distinct_copies
from tests.routing.test_service import folder, make_config

TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: what the test files' patients are called: never on a page, in the API or in a log
PATIENT_NAME, PATIENT_ID = "Testpatient^Hieronymus", "PID-7781-SECRET"
#: small real files: CT, MR (abstain on region); IM-0001 (tags CSPINE; the confident tiny model says chest)
QUEUE_FILES = [("pydicom", "CT_small.dcm"), ("pydicom", "MR_small.dcm"), ("pydicom", "MR_small_RLE.dcm"),
               ("pydicom-data", "emri_small.dcm"), ("fo-dicom", "GH064_mr_head_survey.dcm")]
DISAGREEING_FILE = ("fo-dicom", "IM-0001-0001-0001.dcm")


def web_section(extra: str = "") -> str:
    return f'\n[web]\ntoken = "{TOKEN}"\n{extra}\n'


def router_config(tmp_path: Path, model: Path, *, router: str = "", threshold: float | None = None,
                  rules: str = "", web: str | None = None) -> Path:
    """``tests/routing``'s router.toml (folder destinations review/rest, the tiny model) with
    ``[web]`` and, optionally, ``[classifier] threshold``."""
    body = (folder("review", tmp_path / "out/review") + folder("rest", tmp_path / "out/rest")
            + folder("abdomen", tmp_path / "out/abdomen/{label_region}/{SOPInstanceUID}.dcm") + rules
            + '\n[[rules]]\nname = "rest"\ndefault = true\ndestinations = ["rest"]\n'
            + (web_section() if web is None else web))
    path = make_config(tmp_path, body, model, 'review_destination = "review"\n' + router)
    if threshold is not None:
        path.write_text(path.read_text().replace("threads = 1\n", f"threads = 1\nthreshold = {threshold}\n"))
    return path


def with_patient(files: list[Path], folder_: Path, index: int = 0) -> list[Path]:
    """Copies (new SOPInstanceUIDs) that name the test patient (``index``: which of them)."""
    out = distinct_copies(files, folder_)
    for path in out:
        ds = pydicom.dcmread(path)
        ds.PatientName, ds.PatientID = PATIENT_NAME, f"{PATIENT_ID}-{index}"
        ds.save_as(path, enforce_file_format=True)
    return out


def route(cfg: RouterConfig, files: list[Path]) -> None:
    service = RouterService(cfg, start_sources=False).start()
    try:
        for f in files:
            service.ingest_file(f, "test")
        assert service.wait_idle(120)
    finally:
        service.stop()


@dataclass
class Queue:
    config: Path
    cfg: RouterConfig
    root: Path


def make_queue(tmp_path: Path, model: Path, router: str = "", rules: str = "") -> Queue:
    """A spool whose review queue holds abstained instances and one disagreement."""
    files = [need_data("dicom_zoo", "files", *f) for f in QUEUE_FILES]
    copies = with_patient(files[:3], tmp_path / "in/a", 0) + with_patient(files[3:], tmp_path / "in/b", 1)
    route(load_config(router_config(tmp_path, model, router=router, rules=rules)), copies)
    confident = router_config(tmp_path, model, router=router, rules=rules, threshold=0.0)
    route(load_config(confident), with_patient([need_data("dicom_zoo", "files", *DISAGREEING_FILE)],
                                               tmp_path / "in/c", 2))
    config = router_config(tmp_path, model, router=router, rules=rules)  # back to the calibrated model
    return Queue(config, load_config(config), tmp_path)


def need_web_extra() -> None:
    """Skip the calling test module when the ``web`` extra (or FastAPI's test client) is missing."""
    for module in ("fastapi", "uvicorn", "jinja2", "httpx"):
        pytest.importorskip(module, reason=f"{module} is not installed: pip install 'radroute[web]' httpx")


@pytest.fixture(scope="module")
def queue_dir(tmp_path_factory, tiny_model) -> Queue:
    """Made once per module; tests that settle entries copy it (:func:`fresh_queue`)."""
    return make_queue(tmp_path_factory.mktemp("queue"), tiny_model)


def copy_queue(queue: Queue, root: Path) -> Queue:
    """A private copy of a queue (journal and spool), its paths rewritten."""
    import sqlite3

    shutil.copytree(queue.root, root)
    config = root / "router.toml"
    config.write_text(config.read_text().replace(str(queue.root), str(root)))
    db = sqlite3.connect(root / "spool" / "journal.sqlite")
    db.execute("UPDATE instances SET spool_path = replace(spool_path, ?, ?)", (str(queue.root), str(root)))
    db.commit()
    db.close()
    return Queue(config, load_config(config), root)


@pytest.fixture()
def fresh_queue(queue_dir, tmp_path) -> Queue:
    """A private copy of the module's queue, for tests that settle entries."""
    return copy_queue(queue_dir, tmp_path / "copy")


@pytest.fixture()
def client(fresh_queue):
    from fastapi.testclient import TestClient

    from radroute.web.app import create_app

    with TestClient(create_app(fresh_queue.cfg), headers=AUTH) as c:
        yield c
