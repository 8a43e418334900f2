"""Results as DICOM SR from the router: ``send_results = "sr"`` and ``results_destination``.

The SR is an instance the router makes, journaled with the decision it reports and delivered
like a received instance (here to folders and, by C-STORE, to a real Orthanc)."""
from __future__ import annotations

import json
import shutil

import pydicom
import pytest

from radroute.errors import InvalidConfigError
from radroute.inference.sr import read_sr_results
from radroute.routing.config import load_config, parse_config
from radroute.routing.journal import Journal
from radroute.routing.service import RouterService
from tests.helpers import need_data
from tests.routing.peers import Orthanc, distinct_copies
from tests.routing.test_service import ct_series, folder, make_config, run_files, uid

SR_CLASS = "1.2.840.10008.5.1.4.1.1.88.33"
DEFAULT = '\n[[rules]]\nname = "rest"\ndefault = true\ndestinations = ["{}"]\n'


def reports(folder_path) -> dict[str, list]:
    """Source SOPInstanceUID -> records, for every SR in a folder."""
    out = {}
    for p in folder_path.glob("*.dcm"):
        ds = pydicom.dcmread(p)
        if ds.SOPClassUID != SR_CLASS:
            continue
        records = read_sr_results(ds)
        out[records[0].sop_instance_uid or records[0].series_instance_uid] = records
    return out


def journal_predictions(spool) -> dict[str, dict]:
    journal = Journal(spool, readonly=True)
    try:
        rows = journal.db.execute("SELECT sop_instance_uid, prediction FROM instances"
                                  " WHERE prediction IS NOT NULL").fetchall()
    finally:
        journal.close()
    return {u: json.loads(p) for u, p in rows}


def test_config_keys(tmp_path):
    base = {"router": {"spool": "s"}, "classifier": {"model": "chest-view"},
            "destinations": [{"name": "pacs", "type": "folder", "path": "p", "send_results": "sr"}],
            "rules": [{"name": "d", "default": True, "destinations": ["pacs"]}]}
    cfg = parse_config(base, tmp_path / "router.toml")
    assert cfg.destinations["pacs"].send_results == "sr" and cfg.results_destination is None
    assert cfg.needs_prediction
    bad = json.loads(json.dumps(base))
    bad["destinations"][0]["send_results"] = "json"
    with pytest.raises(InvalidConfigError, match=r"destinations\[0\] \(pacs\)\.send_results"):
        parse_config(bad, tmp_path / "router.toml")
    nowhere = {**base, "router": {"spool": "s", "results_destination": "nowhere"}}
    with pytest.raises(InvalidConfigError, match=r"router\.results_destination: unknown destination"):
        parse_config(nowhere, tmp_path / "router.toml")
    results = parse_config({**base, "router": {"spool": "s", "results_destination": "pacs"}},
                           tmp_path / "router.toml")
    assert results.results_destination == "pacs" and results.needs_prediction


def test_results_follow_instances_and_go_to_the_results_destination(tmp_path, tiny_model):
    """A tag rule routes CT to a destination that takes results: it gets the CT images and
    their SRs; every classified instance's SR also goes to the results destination; the SR
    holds the journal's prediction; a re-received instance's SR is not delivered twice."""
    zoo = need_data("dicom_zoo", "files")
    files = [zoo / "pydicom/CT_small.dcm", zoo / "wg04/MR1_UNC.dcm", zoo / "pydicom-data/emri_small.dcm",
             zoo / "pydicom/CT_small.dcm"]  # the last: received again
    body = (folder("pacs", tmp_path / "out/pacs", 'send_results = "sr"')
            + folder("other", tmp_path / "out/other") + folder("results", tmp_path / "out/results")
            + '\n[[rules]]\nname = "ct"\ndestinations = ["pacs"]\nall = [ { tag = "Modality", equals = "CT" } ]\n'
            + DEFAULT.format("other"))
    config = make_config(tmp_path, body, tiny_model, 'results_destination = "results"')
    st = run_files(config, files)
    ct, mr, emri = uid(files[0]), uid(files[1]), uid(files[2])
    predictions = journal_predictions(tmp_path / "spool")
    results = reports(tmp_path / "out/results")
    assert set(results) == {ct, mr, emri}
    for source, records in results.items():
        assert len(records) == 1 and records[0].to_dict() == {**predictions[source], "path": None}
    assert results[emri][0].frame == 0  # the router classifies the first frame
    pacs = {p.stem: pydicom.dcmread(p, stop_before_pixels=True) for p in (tmp_path / "out/pacs").glob("*.dcm")}
    assert {u for u, ds in pacs.items() if ds.SOPClassUID != SR_CLASS} == {ct}
    assert set(reports(tmp_path / "out/pacs")) == {ct}  # the SR of what was routed there, only
    assert reports(tmp_path / "out/other") == {}
    assert st["deliveries"] == {"pacs": {"sent": 2}, "other": {"sent": 2}, "results": {"sent": 3}}
    assert st["instances"] == {"done": 4 + 4}  # 4 received, 4 SRs made (one a duplicate)
    assert not list((tmp_path / "spool" / "spool").rglob("*.dcm"))  # delivered: spool emptied


def test_series_mode_reports_once_per_series(tmp_path, tiny_model):
    series = ct_series(tmp_path / "series")
    body = folder("pacs", tmp_path / "out/pacs", 'send_results = "sr"') + DEFAULT.format("pacs")
    config = make_config(tmp_path, body, tiny_model,
                         'decision = "series"\nseries_quiet_seconds = 0.3\nseries_max_classified = 4')
    run_files(config, series)
    srs = [p for p in (tmp_path / "out/pacs").glob("*.dcm")
           if pydicom.dcmread(p, stop_before_pixels=True).SOPClassUID == SR_CLASS]
    assert len(srs) == 1
    sr = pydicom.dcmread(srs[0])
    (record,) = read_sr_results(sr)
    assert record.instances == 4 and record.sop_instance_uid is None
    assert record.series_instance_uid == pydicom.dcmread(series[0], stop_before_pixels=True).SeriesInstanceUID
    group = sr.ContentSequence[-1].ContentSequence[0]
    referenced = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in group.ContentSequence
                  if i.ValueType == "IMAGE"}
    assert referenced == {uid(f) for f in series}  # the decision covers every slice


def test_a_source_without_a_valid_uid_is_routed_without_an_sr(tmp_path, tiny_model):
    src = need_data("dicom_zoo", "files", "fo-dicom", "CR-ModalitySequenceLUT.dcm")  # UID 999.999.01...
    body = folder("pacs", tmp_path / "out", 'send_results = "sr"') + DEFAULT.format("pacs")
    st = run_files(make_config(tmp_path, body, tiny_model), [src])
    assert st["deliveries"] == {"pacs": {"sent": 1}}  # the image, not held up, and no SR
    assert [pydicom.dcmread(p).SOPClassUID for p in (tmp_path / "out").glob("*.dcm")] == [
        pydicom.dcmread(src).SOPClassUID]


@pytest.mark.skipif(shutil.which("Orthanc") is None, reason="Orthanc missing (apt-get install orthanc)")
def test_orthanc_receives_the_srs_by_c_store(tmp_path, tiny_model):
    files = distinct_copies([need_data("dicom_zoo", "files", "wg04", n) for n in ("CT1_UNC.dcm", "MR1_UNC.dcm")],
                            tmp_path / "in")
    with Orthanc(tmp_path / "orthanc", durable=False) as orthanc:
        body = (f'\n[[destinations]]\nname = "pacs"\ntype = "dicom"\nhost = "127.0.0.1"\n'
                f'port = {orthanc.dicom_port}\nae_title = "{orthanc.aet}"\nsend_results = "sr"\n'
                + DEFAULT.format("pacs"))
        service = RouterService(load_config(make_config(tmp_path, body, tiny_model)), start_sources=False).start()
        try:
            for f in files:
                service.ingest_file(f, "test")
            assert service.wait_idle(120)
        finally:
            service.stop()
        found = orthanc.post("/tools/find", {"Level": "Instance", "Query": {"Modality": "SR"}, "Expand": True})
        assert len(found) == 2 and orthanc.count() == 4
        for inst in found:
            tags = orthanc.get(f"/instances/{inst['ID']}/tags?simplify")
            group = tags["ContentSequence"][-1]["ContentSequence"][0]["ContentSequence"]
            names = {i["ConceptNameCodeSequence"][0]["CodeValue"]: i for i in group}
            assert names["111001"]["TextValue"] == str(tiny_model)  # the algorithm (TID 4019)
            source = names["121112"]["ReferencedSOPSequence"][0]["ReferencedSOPInstanceUID"]
            assert source in {uid(f) for f in files}
            task = names["modality"]
            assert task["ConceptCodeSequence"][0]["CodingSchemeDesignator"] == "99RADROUTE"
            assert task["ConceptCodeSequence"][0]["CodeValue"] in ("CT", "MR")
            probability = task["ContentSequence"][0]
            assert probability["ConceptNameCodeSequence"][0]["CodeValue"] == "122157"
            assert 0.5 <= float(probability["MeasuredValueSequence"][0]["NumericValue"]) <= 1
            assert tags["StudyInstanceUID"] == pydicom.dcmread(
                next(f for f in files if uid(f) == source), stop_before_pixels=True).StudyInstanceUID


def test_an_instance_decided_again_gives_the_same_sr_once(tmp_path, tiny_model):
    """Received again (or decided again after a crash): the same SR UID, not delivered twice."""
    src = need_data("dicom_zoo", "files", "pydicom", "MR_small.dcm")
    body = folder("results", tmp_path / "out") + DEFAULT.format("results")
    config = make_config(tmp_path, body, tiny_model, 'results_destination = "results"\nkeep_delivered = true')
    run_files(config, [src])
    first = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.dcm")}
    st = run_files(config, [src])
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.dcm")} == first  # not rewritten
    assert len(first) == 2 and st["deliveries"] == {"results": {"sent": 2}}
    journal = Journal(tmp_path / "spool", readonly=True)
    try:
        made = journal.db.execute("SELECT DISTINCT sop_instance_uid FROM instances WHERE rule='results'").fetchall()
        duplicates = journal.db.execute("SELECT COUNT(*) FROM events WHERE kind='duplicate'").fetchone()[0]
    finally:
        journal.close()
    assert len(made) == 1 and duplicates == 2  # the image and its SR, each refused once
