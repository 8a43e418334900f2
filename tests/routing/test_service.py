"""The router service in-process with folder destinations and a real (tiny) model package:
templates, review, series decisions, tag correction, dead-letter, the watched folder, the CLI."""
from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from radroute.routing.config import load_config
from radroute.routing.service import RouterService
from radroute.routing.tagfix import PRIVATE_CREATOR, PRIVATE_GROUP
from tests.helpers import need_data
from tests.routing.peers import distinct_copies


def make_config(tmp_path: Path, body: str, model: Path | None = None, router: str = "") -> Path:
    text = f'[router]\nspool = "{tmp_path / "spool"}"\n{router}\n'
    if model is not None:
        text += f'\n[classifier]\nmodel = "{model}"\nbatch_size = 8\nmax_wait_ms = 10\nthreads = 1\n'
    path = tmp_path / "router.toml"
    path.write_text(text + body)
    return path


def folder(name: str, path: Path | str, extra: str = "") -> str:
    return f'\n[[destinations]]\nname = "{name}"\ntype = "folder"\npath = "{path}"\n{extra}\n'


def run_files(config: Path, files: list[Path], timeout: float = 120) -> dict:
    service = RouterService(load_config(config), start_sources=False).start()
    try:
        for f in files:
            service.ingest_file(f, "test")
        assert service.wait_idle(timeout)
        return service.journal.status(recent=50)
    finally:
        service.stop()


def uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True, force=True).SOPInstanceUID)


def ct_series(folder: Path) -> list[Path]:
    """The real 20-slice CT series (JPEG 2000) with the UIDs its de-identification emptied
    filled in (one new series); pixel data untouched."""
    from pydicom.uid import CTImageStorage, generate_uid

    folder.mkdir(parents=True)
    series_uid, study_uid = generate_uid(), generate_uid()
    out = []
    for src in sorted(need_data("totalseg_ct", "dicom_series_ct_abdomen").iterdir()):
        ds = pydicom.dcmread(src)
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, generate_uid()
        ds.SeriesInstanceUID, ds.StudyInstanceUID = series_uid, study_uid
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"{src.name}.dcm", enforce_file_format=True)
        out.append(folder / f"{src.name}.dcm")
    return out


def test_templates_review_and_dedup(tmp_path, zoo_files, tiny_model):
    """Tag rules route by modality into a templated folder; the rest abstain (region below
    threshold) and go to review; the zoo's repeated SOPInstanceUIDs are delivered once."""
    body = (folder("ct", tmp_path / "out/ct/{Modality}/{label_modality}/{SOPInstanceUID}.dcm")
            + folder("review", tmp_path / "out/review") + folder("rest", tmp_path / "out/rest")
            + '\n[[rules]]\nname = "ct"\ndestinations = ["ct"]\nall = [ { tag = "Modality", equals = "CT" } ]\n'
            + '\n[[rules]]\nname = "rest"\ndefault = true\ndestinations = ["rest"]\n')
    config = make_config(tmp_path, body, tiny_model, 'review_destination = "review"')
    st = run_files(config, zoo_files)
    uids = {uid(f) for f in zoo_files}
    ct = list((tmp_path / "out/ct").rglob("*.dcm"))
    review = list((tmp_path / "out/review").glob("*.dcm"))
    assert len(ct) + len(review) == len(uids) == 49  # 56 files, 49 distinct instances
    assert not (tmp_path / "out/rest").exists()  # the tiny model's region always abstains
    assert all(p.parent.parent.name == "CT" and p.parent.name in ("CT", "MR") for p in ct)
    assert all(pydicom.dcmread(p, stop_before_pixels=True).Modality == "CT" for p in ct)
    assert all(pydicom.dcmread(p, stop_before_pixels=True).Modality != "CT" for p in review)
    assert st["instances"] == {"done": 56}
    assert sum(e["kind"] == "duplicate" for e in st["recent_errors"]) == 0  # not listed as errors


def test_series_are_routed_whole(tmp_path, tiny_model):
    """Per-series decisions: a 20-slice CT series (JPEG 2000) is classified on a sample and
    every slice goes to the same destination; the forwarded files are the received bytes."""
    series = ct_series(tmp_path / "series")
    body = (folder("by-series", tmp_path / "out/{SeriesInstanceUID}/{label_region}")
            + folder("other", tmp_path / "out/other")
            + '\n[[rules]]\nname = "thorax"\ndestinations = ["by-series"]\n'
              'all = [ { task = "region", label = "thorax", min_score = 0.2 } ]\n'
            + '\n[[rules]]\nname = "rest"\ndefault = true\ndestinations = ["other"]\n')
    config = make_config(tmp_path, body, tiny_model,
                         'decision = "series"\nseries_quiet_seconds = 0.5\nseries_max_classified = 4')
    cfg = load_config(config)
    service = RouterService(cfg, start_sources=False).start()
    try:
        for f in series[:10]:
            service.ingest_file(f, "test")
        time.sleep(0.1)
        assert service.journal.status()["instances"] == {"received": 10}  # held: not quiet yet
        for f in series[10:]:
            service.ingest_file(f, "test")
        assert service.wait_idle(60)
        assert service.batcher.images <= 4  # a sample, not every slice
    finally:
        service.stop()
    # after a restart, a late slice of the decided series follows it (the journal remembers)
    late = distinct_copies(series[:1], tmp_path / "late")
    service = RouterService(cfg, start_sources=False).start()
    try:
        service.ingest_file(late[0], "test")
        assert service.wait_idle(30)
        assert service.batcher.images == 0  # not classified again: the series' decision
    finally:
        service.stop()
    series = series + late
    out = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(out) == len(series)
    assert len({p.parent for p in out}) == 1  # one series, one place
    by_uid = {uid(p): p for p in out}
    for f in series:
        assert by_uid[uid(f)].read_bytes() == f.read_bytes()


def test_tag_correction_on_forwarded_copies_only(tmp_path, confident_model):
    """A corrected copy carries the predicted body part and a private block; the spooled
    original keeps its bytes; the spine-vs-chest disagreement is recorded."""
    src = need_data("dicom_zoo", "files", "fo-dicom", "IM-0001-0001-0001.dcm")  # tags say CSPINE
    body = (folder("fixed", tmp_path / "fixed", "correct_tags = true") + folder("raw", tmp_path / "raw")
            + '\n[tag_correction]\nview_task = "modality"\nview_position_map = { CT = "AP" }\n'
            + '\n[[rules]]\nname = "all"\ndefault = true\ndestinations = ["fixed", "raw"]\n')
    config = make_config(tmp_path, body, confident_model, "keep_delivered = true")
    st = run_files(config, [src])
    assert st["disagreements"] == 1
    fixed = pydicom.dcmread(next((tmp_path / "fixed").iterdir()))
    raw_path = next((tmp_path / "raw").iterdir())
    assert fixed.BodyPartExamined == "CHEST" and fixed.ViewPosition == "AP"
    block = fixed.private_block(PRIVATE_GROUP, PRIVATE_CREATOR)
    from radroute.inference import load_model

    model = load_model(confident_model)
    assert (block[0x01].value, block[0x02].value) == (model.name, model.version)
    assert block[0x03].value == ["modality=CT", "region=thorax"]
    assert float(block[0x04].value[0]) > 0 and block[0x05].value == "N"
    assert fixed.PixelData == pydicom.dcmread(src).PixelData  # pixel data untouched
    assert raw_path.read_bytes() == src.read_bytes()  # the uncorrected destination: as received
    spooled = list((tmp_path / "spool" / "spool").rglob("*.dcm"))
    assert [hashlib.sha256(p.read_bytes()).hexdigest() for p in spooled] == [
        hashlib.sha256(src.read_bytes()).hexdigest()]


def test_failures_retry_then_dead_letter(tmp_path):
    """A destination that fails per instance (target path is a folder) retries with backoff,
    then dead-letters; status shows it and the error."""
    src = need_data("dicom_zoo", "files", "pydicom", "CT_small.dcm")
    (tmp_path / "out" / uid(src)).mkdir(parents=True)  # the target file name is taken by a folder
    body = (folder("bad", tmp_path / "out/{SOPInstanceUID}", "max_attempts = 3\nbackoff_seconds = 0.05")
            + '\n[[rules]]\nname = "all"\ndefault = true\ndestinations = ["bad"]\n')
    st = run_files(make_config(tmp_path, body), [src])
    assert st["deliveries"] == {"bad": {"dead": 1}}
    kinds = [e["kind"] for e in st["recent_errors"]]
    assert kinds.count("retry") == 2 and kinds.count("dead") == 1
    assert st["instances"] == {"classified": 1}  # kept (spool file too) for a later retry


def test_watched_folder(tmp_path):
    """Files dropped into the watched folder are routed and removed; non-DICOM is set aside."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    files = distinct_copies([need_data("dicom_zoo", "files", "pydicom", "MR_small.dcm")], tmp_path / "src", 3)
    body = (f'\n[watch]\npath = "{inbox}"\npoll_seconds = 0.1\n' + folder("out", tmp_path / "out")
            + '\n[[rules]]\nname = "all"\ndefault = true\ndestinations = ["out"]\n')
    service = RouterService(load_config(make_config(tmp_path, body))).start()
    try:
        (inbox / "notes.txt").write_text("not an image")
        for f in files:
            shutil.copy(f, inbox / f.name)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(list((tmp_path / "out").glob("*.dcm"))) < 3:
            time.sleep(0.1)
        assert service.wait_idle(30)
    finally:
        service.stop()
    assert sorted(p.name for p in (tmp_path / "out").glob("*.dcm")) == sorted(f"{uid(f)}.dcm" for f in files)
    assert [p.name for p in inbox.iterdir() if p.is_file()] == []
    assert (inbox / ".rejected" / "notes.txt").exists()


def test_cli_dry_run_route_and_status(tmp_path, tiny_model):
    from radroute.cli import app

    files = [need_data("dicom_zoo", "files", "pydicom", n) for n in ("CT_small.dcm", "MR_small.dcm")]
    body = (folder("ct", tmp_path / "out/ct") + folder("other", tmp_path / "out/other")
            + '\n[[rules]]\nname = "ct"\ndestinations = ["ct"]\nall = [ { tag = "Modality", equals = "CT" } ]\n'
            + '\n[[rules]]\nname = "model-says-ct"\ndestinations = ["ct", "other"]\n'
              'all = [ { task = "modality", label = "CT" } ]\n'
            + '\n[[rules]]\nname = "rest"\ndefault = true\ndestinations = ["other"]\n')
    config = make_config(tmp_path, body, tiny_model)
    runner = CliRunner()
    res = runner.invoke(app, ["route", "--dry-run", "--json", "-c", str(config), *map(str, files),
                              str(tmp_path / "missing.dcm")])
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    assert res.exit_code == 1  # one input could not be read
    assert [r["rule"] for r in rows] == ["ct", "model-says-ct", None]
    assert rows[0]["prediction"] is None  # a tag rule matched first: the model did not run
    assert rows[1]["prediction"]["modality"]["label"] == "CT"
    assert rows[1]["targets"] == {"ct": str(tmp_path / "out/ct" / f"{uid(files[1])}.dcm"),
                                  "other": str(tmp_path / "out/other" / f"{uid(files[1])}.dcm")}
    assert rows[2]["error"]["type"] == "not_found"
    assert not (tmp_path / "out").exists() and not (tmp_path / "spool").exists()  # nothing sent

    res = runner.invoke(app, ["route", "-c", str(config), *map(str, files)])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "out").rglob("*.dcm"))) == 3
    res = runner.invoke(app, ["status", "-c", str(config), "--json"])
    st = json.loads(res.stdout)
    assert st["deliveries"] == {"ct": {"sent": 2}, "other": {"sent": 1}}
    assert st["instances"] == {"done": 2}

    config.write_text(config.read_text().replace('name = "rest"', 'name = "rest"\nbogus = 1'))
    res = runner.invoke(app, ["route", "--dry-run", "-c", str(config), str(files[0])])
    assert res.exit_code == 2 and "unknown key(s): bogus" in res.output


def test_crash_between_send_and_record_is_not_sent_twice(tmp_path):
    """Deliveries left 'sending' by a crash: the destination is asked first; what it holds is
    recorded as sent without sending it again, the rest is sent."""
    import sqlite3

    files = distinct_copies([need_data("dicom_zoo", "files", "pydicom", "CT_small.dcm")], tmp_path / "in", 2)
    body = folder("out", tmp_path / "out") + '\n[[rules]]\nname = "d"\ndefault = true\ndestinations = ["out"]\n'
    config = make_config(tmp_path, body, router="keep_delivered = true")
    run_files(config, files)
    delivered = sorted((tmp_path / "out").iterdir())
    stamp = [(p.stat().st_ino, p.stat().st_mtime_ns) for p in delivered]
    delivered[1].unlink()  # this one "never arrived"
    db = sqlite3.connect(tmp_path / "spool" / "journal.sqlite")  # the state a crash leaves
    db.execute("UPDATE deliveries SET state='sending', sent_at=NULL")
    db.execute("UPDATE instances SET state='classified'")
    db.commit()
    db.close()
    st = run_files(config, [])
    assert st["deliveries"] == {"out": {"sent": 2}}
    assert (delivered[0].stat().st_ino, delivered[0].stat().st_mtime_ns) == stamp[0]  # not rewritten
    assert delivered[1].exists()  # sent again
    assert st["instances"] == {"done": 2}


def test_one_router_per_spool(tmp_path):
    from radroute.errors import InvalidConfigError

    body = folder("out", tmp_path / "out") + '\n[[rules]]\nname = "d"\ndefault = true\ndestinations = ["out"]\n'
    cfg = load_config(make_config(tmp_path, body))
    first = RouterService(cfg, start_sources=False).start()
    try:
        with pytest.raises(InvalidConfigError, match="another radroute router is using the spool"):
            RouterService(cfg, start_sources=False).start()
    finally:
        first.stop()
    RouterService(cfg, start_sources=False).start().stop()  # free again


def test_rules_are_checked_against_the_model(tmp_path, tiny_model):
    from radroute.errors import InvalidConfigError

    body = (folder("out", tmp_path / "out")
            + '\n[[rules]]\nname = "v"\ndestinations = ["out"]\nall = [ { task = "view", label = "PA" } ]\n'
            + '\n[[rules]]\nname = "rest"\ndefault = true\ndestinations = ["out"]\n')
    with pytest.raises(InvalidConfigError, match="has no task 'view'"):
        RouterService(load_config(make_config(tmp_path, body, tiny_model)), start_sources=False).start()


def test_classifier_threshold_overrides_the_package(tmp_path, confident_model):
    """``[classifier] threshold`` as ``classify --threshold``: the confident model now abstains."""
    files = [need_data("dicom_zoo", "files", "pydicom", n) for n in ("CT_small.dcm", "MR_small.dcm")]
    body = (folder("review", tmp_path / "out/review") + folder("rest", tmp_path / "out/rest")
            + '\n[[rules]]\nname = "rest"\ndefault = true\ndestinations = ["rest"]\n')
    config = make_config(tmp_path, body, confident_model, 'review_destination = "review"')
    st = run_files(config, files)
    assert st["deliveries"] == {"rest": {"sent": 2}}
    config.write_text(config.read_text().replace("threads = 1\n", "threads = 1\nthreshold = 0.999999\n"))
    shutil.rmtree(tmp_path / "spool")
    st = run_files(config, files)
    assert st["deliveries"] == {"review": {"sent": 2}}
