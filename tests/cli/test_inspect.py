"""``radroute inspect``: table and JSONL output, null-not-missing fields, exit codes."""
from __future__ import annotations

import json
import shutil

from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from radroute.cli import app
from radroute.cli.inspect import RECORD_FIELDS
from tests.helpers import need_data

runner = CliRunner()
REQUIRED = {"path", "ok", "error", "modality", "body_part_examined", "view_position", "body_part", "rows",
            "columns", "frames", "transfer_syntax", "photometric", "sop_instance_uid", "series_instance_uid"}


def _jsonl(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_jsonl_over_the_zoo(dicom_zoo):
    result = runner.invoke(app, ["inspect", str(dicom_zoo), "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    records = _jsonl(result.stdout)
    assert len(records) == 56
    assert REQUIRED <= set(RECORD_FIELDS)
    for record in records:
        assert list(record) == RECORD_FIELDS  # every field present, in a stable order
    failed = {r["path"].rsplit("/", 1)[-1]: r["error"]["type"] for r in records if not r["ok"]}
    assert failed == {"RG3_JPLY.dcm": "unsupported_transfer_syntax", "JPEG-lossy.dcm": "unsupported_transfer_syntax"}
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in records}
    chest = by_name["CR-MONO1-10-chest.dcm"]
    assert chest["transfer_syntax"] is None and chest["body_part"] == "chest" and chest["error"] is None
    jply = by_name["RG3_JPLY.dcm"]
    assert jply["modality"] == "CR" and jply["transfer_syntax"] == "1.2.840.10008.1.2.4.51"  # tags still shown
    assert by_name["HasFragmentSequence_xa.dcm"]["frames"] == 96


def test_strict_out_and_broken_files(tmp_path):
    shutil.copy(get_testdata_file("CT_small.dcm"), tmp_path / "good.dcm")
    (tmp_path / "empty.dcm").write_bytes(b"")
    out = tmp_path / "report.jsonl"
    result = runner.invoke(app, ["inspect", str(tmp_path), str(tmp_path / "missing.dcm"), "-f", "jsonl", "--out", str(out)])
    assert result.exit_code == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["path"].rsplit("/", 1)[-1], r["ok"], r["error"] and r["error"]["type"]) for r in records] == [
        ("empty.dcm", False, "unreadable"), ("good.dcm", True, None), ("missing.dcm", False, "not_found")]
    assert records[0]["modality"] is None and "modality" in records[0]
    strict = runner.invoke(app, ["inspect", str(tmp_path), "--strict"])
    assert strict.exit_code == 1
    assert runner.invoke(app, ["inspect", str(tmp_path / "good.dcm"), "--strict"]).exit_code == 0


def test_table_is_the_default(tmp_path):
    shutil.copy(get_testdata_file("MR_small.dcm"), tmp_path / "mr.dcm")
    result = runner.invoke(app, ["inspect", str(tmp_path / "mr.dcm")])
    assert result.exit_code == 0
    assert "mr.dcm" in result.stdout and "MR" in result.stdout and "Explicit VR Little Endian" in result.stdout
    assert runner.invoke(app, ["inspect", str(tmp_path), "--format", "xml"]).exit_code != 0


def test_series_counts_as_its_files_and_nifti_as_one():
    series = need_data("totalseg_ct", "dicom_series_ct_abdomen")
    nifti = need_data("totalseg_ct", "volumes", "example_ct_sm.nii.gz")
    result = runner.invoke(app, ["inspect", str(series), str(nifti), "-f", "jsonl", "--header-only"])
    records = _jsonl(result.stdout)
    assert len(records) == 21 and all(r["ok"] for r in records)
    assert {r["modality"] for r in records[:20]} == {"CT"}  # (this anonymised series has empty UIDs)
    assert all(r["series_instance_uid"] is None for r in records[:20])  # empty tag -> null
    assert records[20]["format"] == "nifti" and records[20]["frames"] == 30 and records[20]["modality"] is None
