"""Results as DICOM SR: built for every dicom_zoo file, valid for dciodvfy, read by dcmtk's
dsrdump, stored by Orthanc with the right codes, and read back into the same records."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import UID, generate_uid

from radroute.inference.record import Prediction, make_prediction
from radroute.inference.sr import (BODY_PART_CODES, CODING_SCHEME, VIEW_CODES, CannotReportError,
                                   build_sr, clean_source, read_sr_results, sr_results, write_sr)

TASKS = {"view": ["frontal", "lateral"], "region": ["head", "thorax", "spine_musculoskeletal"],
         "modality": ["CT", "MR"]}
MAP = {"region": {"head": "head", "thorax": "chest"}}


def records_for(ds: pydicom.Dataset, frames: int = 1, path: str | None = None) -> list[Prediction]:
    """Records as a model would give them: one per frame, one abstaining task, labels with
    standard codes (frontal, head) and private ones (thorax, a 21-character label)."""
    out = []
    for f in range(frames):
        probs = {"view": np.array([0.9, 0.1]), "region": np.array([0.15, 0.8 - f * 0.01, 0.05 + f * 0.01]),
                 "modality": np.array([0.55, 0.45])}
        out.append(make_prediction(probs, TASKS, {"view": 0.5, "region": 0.5, "modality": 0.6}, MAP,
                                   path=path, frame=f if frames > 1 else None,
                                   sop_instance_uid=str(ds.SOPInstanceUID),
                                   series_instance_uid=str(ds.SeriesInstanceUID),
                                   model="tiny", model_version="0123abcd",
                                   models=[{"name": "tiny", "version": "0123abcd", "tasks": list(TASKS)}]))
    return out


def stored(records: list[Prediction]) -> list[dict]:
    """What an SR keeps of records: everything but the local path."""
    return [{**r.to_dict(), "path": None} for r in records]


def valid_sources(zoo_files: list[Path]) -> list[tuple[Path, pydicom.Dataset]]:
    out = []
    for path in zoo_files:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        if all(UID(str(ds.get(k) or "")).is_valid for k in ("SOPClassUID", "SOPInstanceUID",
                                                              "SeriesInstanceUID", "StudyInstanceUID")):
            out.append((path, ds))
    return out


@pytest.fixture(scope="module")
def zoo_srs(tmp_path_factory) -> list[tuple[Path, Path, list[Prediction]]]:
    """(source, SR file, records) for every dicom_zoo file with valid UIDs (up to 3 frames)."""
    from tests.helpers import need_data

    folder = tmp_path_factory.mktemp("srs")
    out = []
    for i, (path, ds) in enumerate(valid_sources(sorted(need_data("dicom_zoo", "files").rglob("*.dcm")))):
        records = records_for(ds, min(3, int(ds.get("NumberOfFrames") or 1)))
        target = folder / f"{i:02d}.dcm"
        build_sr(records, ds).save_as(target, enforce_file_format=True)
        out.append((path, target, records))
    return out


def test_codes_are_those_of_dicom():
    assert {k: c.value for k, c in BODY_PART_CODES.items()} == {
        "head": "69536005", "neck": "45048000", "chest": "816094009", "abdomen": "818981001",
        "pelvis": "816092008", "spine": "421060004", "upper_limb": "53120007",
        "lower_limb": "61685007", "breast": "76752008", "whole_body": "38266002"}
    assert {c.scheme_designator for c in BODY_PART_CODES.values()} == {"SCT"}
    assert {k: c.value for k, c in VIEW_CODES.items()} == {"frontal": "399033003", "lateral": "399067008"}


def test_every_zoo_file_gets_an_sr_that_reads_back(zoo_srs):
    assert len(zoo_srs) >= 50  # the zoo's files with valid UIDs, multi-frame ones included
    for source, target, records in zoo_srs:
        sr = pydicom.dcmread(target)
        src = pydicom.dcmread(source, stop_before_pixels=True, force=True)
        assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.33" and sr.Modality == "SR"
        assert sr.StudyInstanceUID == src.StudyInstanceUID  # same study, its own series
        assert sr.SeriesInstanceUID != src.SeriesInstanceUID
        assert sr.get("PatientID", "") == src.get("PatientID", "")
        assert [r.to_dict() for r in read_sr_results(sr)] == stored(records), source.name


def test_multiframe_sr_has_a_group_per_frame(zoo_srs):
    source, target, records = next(s for s in zoo_srs if s[0].name == "emri_small.dcm")
    back = read_sr_results(target)
    assert [r.frame for r in back] == [0, 1, 2] and len(records) == 3
    assert back[1].task("region").score == records[1].task("region").score


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy missing (apt-get install dicom3tools)")
def test_dciodvfy_finds_no_error(zoo_srs):
    for source, target, _ in zoo_srs:
        res = subprocess.run(["dciodvfy", str(target)], capture_output=True, text=True, timeout=60)
        errors = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]
        assert errors == [], f"{source.name}: {errors}"


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="dsrdump missing (apt-get install dcmtk)")
def test_dsrdump_reads_the_tree(zoo_srs):
    for source, target, _ in zoo_srs:
        res = subprocess.run(["dsrdump", str(target)], capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, f"{source.name}: {res.stderr}"
    source, target, _ = next(s for s in zoo_srs if s[0].name == "CT1_UNC.dcm")
    tree = subprocess.run(["dsrdump", str(target)], capture_output=True, text=True).stdout
    for line in ('<contains CODE:(,,"Image View")=(399033003,SCT,"frontal")>',
                 '<has properties NUM:(,,"Probability")="0.9" (1,UCUM,"no units")>',
                 '<contains CODE:(,,"region")=(thorax,99RADROUTE,"thorax")>',
                 '<has properties CODE:(,,"Abstained")=(373066001,SCT,"Yes")>',
                 '<contains CODE:(,,"Target Region")=(816094009,SCT,"Chest")>',
                 '<has concept mod TEXT:(,,"Algorithm Name")="tiny">',
                 '<has concept mod TEXT:(,,"Algorithm Version")="0123abcd">'):
        assert line in tree


def test_a_cascade_names_the_model_of_each_task(dicom_zoo, tmp_path):
    """Records of a cascade (a body-part model, then a view model; the modality from the tag):
    each task names the model that answered it, and the record reads back the same."""
    from dataclasses import replace

    ds = pydicom.dcmread(dicom_zoo / "files/fo-dicom/CR-MONO1-10-chest.dcm", stop_before_pixels=True, force=True)
    (plain,) = records_for(ds)
    tagged = replace(plain.task("modality"), label="CT", score=1.0, source="tag",
                     probabilities={"CT": 1.0, "MR": 0.0}, abstained=False)
    record = replace(plain, model="chest-view", model_version="v2", abstained=False,
                     models=[{"name": "body", "version": "v1", "tasks": ["region", "modality"]},
                             {"name": "chest-view", "version": "v2", "tasks": ["view"]}],
                     predictions={"region": plain.task("region"), "modality": tagged,
                                  "view": plain.task("view")})
    target = tmp_path / "cascade.dcm"
    build_sr(record, ds).save_as(target, enforce_file_format=True)
    assert [r.to_dict() for r in read_sr_results(target)] == stored([record])
    if shutil.which("dsrdump"):
        tree = subprocess.run(["dsrdump", str(target)], capture_output=True, text=True, check=True).stdout
        assert '<has concept mod TEXT:(,,"Algorithm Name")="body">' in tree
        assert '<has properties CODE:(,,"Source of the answer")=(tag,99RADROUTE,"tag")>' in tree
    if shutil.which("dciodvfy"):
        res = subprocess.run(["dciodvfy", str(target)], capture_output=True, text=True)
        assert not [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("Error")]


def test_series_aggregate_references_every_instance(dicom_zoo):
    series = []
    for _ in range(3):  # three instances of one series
        ds = pydicom.dcmread(dicom_zoo / "files/pydicom/CT_small.dcm", stop_before_pixels=True)
        ds.SOPInstanceUID = generate_uid()
        series.append(ds)
    parts = [r for ds in series for r in records_for(ds)]
    agg = Prediction.aggregate(parts, {"view": 0.5, "region": 0.5, "modality": 0.6}, MAP)
    sr = build_sr(agg, series)
    group = sr.ContentSequence[-1].ContentSequence[0]
    images = [i for i in group.ContentSequence if i.ValueType == "IMAGE"]
    assert [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in images] == [
        ds.SOPInstanceUID for ds in series]
    back = read_sr_results(sr)
    assert [r.to_dict() for r in back] == [agg.to_dict()] and back[0].instances == 3


def test_uids_follow_the_source_and_the_model(zoo_srs):
    source, _, records = zoo_srs[0]
    ds = pydicom.dcmread(source, stop_before_pixels=True, force=True)
    first, again = build_sr(records, ds), build_sr(records, ds)
    assert first.SOPInstanceUID == again.SOPInstanceUID  # the same SR: a PACS stores it once
    other = [Prediction.from_dict({**r.to_dict(), "model_version": "new"}) for r in records]
    assert build_sr(other, ds).SOPInstanceUID != first.SOPInstanceUID
    assert build_sr(other, ds).SeriesInstanceUID == first.SeriesInstanceUID  # one results series
    assert first.CodingSchemeIdentificationSequence[0].CodingSchemeDesignator == CODING_SCHEME


def test_bad_sources_and_other_files(dicom_zoo, tmp_path):
    bad = pydicom.dcmread(dicom_zoo / "files/fo-dicom/CR-ModalitySequenceLUT.dcm", stop_before_pixels=True)
    with pytest.raises(CannotReportError, match="SOPInstanceUID .* not a valid UID"):
        build_sr(records_for(bad), bad)
    ds = pydicom.dcmread(dicom_zoo / "files/deid-data/FAKE_ctbrain1_smiley.dcm", stop_before_pixels=True)
    assert ds.PatientAge == "75Y" and "PatientAge" not in clean_source(ds)  # invalid AS: left out
    failed = Prediction.failed("x.dcm", {"type": "unreadable", "message": "x"})
    with pytest.raises(CannotReportError):
        build_sr([failed], ds)
    assert read_sr_results(ds) is None  # an image is no radroute SR
    assert sr_results(dicom_zoo / "files/wg04/CT1_UNC.dcm") is None
    (tmp_path / "junk.dcm").write_bytes(b"junk")
    assert sr_results(tmp_path / "junk.dcm") is None


def test_write_sr_names_the_file_after_the_source(dicom_zoo, tmp_path):
    path = dicom_zoo / "files/wg04/MR1_UNC.dcm"
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    written = write_sr(records_for(ds, path=str(path)), tmp_path / "sr")
    assert written == tmp_path / "sr" / f"{ds.SOPInstanceUID}.dcm"
    assert json.dumps(sr_results(written))  # JSON-ready, as inspect prints it
    png = Prediction.from_dict({**records_for(ds)[0].to_dict(), "sop_instance_uid": None, "path": "a.png"})
    assert write_sr([png], tmp_path / "sr") is None  # not DICOM: no SR


@pytest.mark.skipif(shutil.which("Orthanc") is None, reason="Orthanc missing (apt-get install orthanc)")
def test_orthanc_stores_it_and_gives_the_codes_back(zoo_srs, tmp_path):
    from tests.routing.peers import Orthanc

    source, target, records = next(s for s in zoo_srs if s[0].name == "CT1_UNC.dcm")
    with Orthanc(tmp_path / "orthanc", durable=False) as orthanc:
        answer = orthanc._request("/instances", target.read_bytes())
        instance = json.loads(answer)["ID"]
        tags = orthanc.get(f"/instances/{instance}/tags?simplify")
        assert tags["Modality"] == "SR" and tags["SOPInstanceUID"] == pydicom.dcmread(target).SOPInstanceUID
        group = tags["ContentSequence"][-1]["ContentSequence"][0]["ContentSequence"]
        codes = {(i["ConceptNameCodeSequence"][0]["CodeMeaning"],
                  i["ConceptCodeSequence"][0]["CodingSchemeDesignator"],
                  i["ConceptCodeSequence"][0]["CodeValue"]) for i in group if i["ValueType"] == "CODE"}
        assert codes == {("Image View", "SCT", "399033003"), ("region", "99RADROUTE", "thorax"),
                         ("modality", "99RADROUTE", "CT"), ("Target Region", "SCT", "816094009")}
        view = next(i for i in group if i.get("ConceptNameCodeSequence", [{}])[0].get("CodeValue") == "111031")
        probability = next(c for c in view["ContentSequence"] if c["ValueType"] == "NUM")
        assert probability["ConceptNameCodeSequence"][0]["CodeValue"] == "122157"
        assert float(probability["MeasuredValueSequence"][0]["NumericValue"]) == 0.9
        assert probability["MeasuredValueSequence"][0]["MeasurementUnitsCodeSequence"][0]["CodeValue"] == "1"
        back = read_sr_results(pydicom.dcmread(io.BytesIO(orthanc.file(instance))))
        assert [r.to_dict() for r in back] == stored(records)
