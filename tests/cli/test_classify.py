"""`radroute classify`, `radroute export`, `radroute models` end to end on real files."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file
from typer.testing import CliRunner

from radroute.cli import app
from radroute.models.package import bundled_names

RECORD_FIELDS = {"path", "frame", "sop_instance_uid", "series_instance_uid", "model",
                 "model_version", "models", "predictions", "abstained", "body_part", "error"}
BUNDLED = {"ct-organ", "ct-mr-region", "chest-view"}
need_bundled = pytest.mark.skipif(not BUNDLED <= set(bundled_names()),
                                  reason="bundled models not trained yet (scripts/train_bundled.py)")


@pytest.fixture()
def inputs(dicom_zoo, data_dir, tmp_path) -> Path:
    """A folder (with a sub-folder) of real files plus a garbage and a truncated DICOM."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for name in ("wg04/CT1_UNC.dcm", "wg04/MR1_UNC.dcm", "fo-dicom/CR-MONO1-10-chest.dcm"):
        os.symlink(dicom_zoo / "files" / name, folder / Path(name).name)
    os.symlink(dicom_zoo / "files/pydicom-data/emri_small.dcm", folder / "sub/emri_small.dcm")
    os.symlink(data_dir / "medpix2/images/MPX1009_synpic46283.jpg", folder / "sub/medpix.jpg")
    data = (dicom_zoo / "files/wg04/CT2_UNC.dcm").read_bytes()
    (folder / "truncated.dcm").write_bytes(data[: len(data) // 2])
    (folder / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"nonsense" * 10)
    return folder


def run(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + (result.stderr if result.stderr_bytes else "")
    return result


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_contract_and_errors(tiny_package, inputs, tmp_path):
    out = tmp_path / "out.jsonl"
    result = run("classify", inputs, "--model", tiny_package, "--format", "jsonl", "--out", out, "--workers", "2")
    records = jsonl(out)
    assert all(set(r) == RECORD_FIELDS for r in records)
    paths = {r["path"] for r in records}
    assert len(paths) == 7  # every input, good or bad, has its lines
    errors = {Path(r["path"]).name: r["error"]["type"] for r in records if r["error"]}
    assert set(errors) == {"truncated.dcm", "garbage.dcm"}
    assert all(r["predictions"] is None for r in records if r["error"])
    frames = [r["frame"] for r in records if r["path"].endswith("emri_small.dcm")]
    assert frames == list(range(10))
    assert "images/s" in result.stderr and "2 errors" in result.stderr


def test_csv_rows_per_task_and_table(tiny_package, inputs, tmp_path):
    out = tmp_path / "out.csv"
    run("classify", inputs / "CT1_UNC.dcm", inputs / "garbage.dcm", "--model", tiny_package,
        "--format", "csv", "--out", out, "--workers", "0")
    rows = list(csv.DictReader(out.open()))
    assert [r["task"] for r in rows] == ["modality", "region", ""]
    assert rows[2]["error_type"] and not rows[2]["label"]
    table = run("classify", inputs / "CT1_UNC.dcm", "--model", tiny_package, "--workers", "0").stdout
    assert "CT1_UNC.dcm" in table and "modality=" in table and "region=" in table


def test_threshold_option(tiny_package, inputs, tmp_path):
    out = tmp_path / "t.jsonl"
    run("classify", inputs / "MR1_UNC.dcm", "--model", tiny_package, "-f", "jsonl", "-o", out, "--threshold", "1.01")
    rec = jsonl(out)[0]
    assert rec["abstained"] is True and rec["body_part"] is None


def test_resume_skips_done_inputs(tiny_package, inputs, tmp_path):
    out = tmp_path / "resume.jsonl"
    first = [inputs / "CT1_UNC.dcm", inputs / "MR1_UNC.dcm"]
    run("classify", *first, "--model", tiny_package, "-f", "jsonl", "-o", out, "--workers", "0")
    with out.open("a") as f:
        f.write('{"path": "half a line')  # a run killed mid-write
    result = run("classify", inputs, "--model", tiny_package, "-f", "jsonl", "-o", out, "--resume", "--workers", "0")
    records = jsonl(out)  # the partial line is gone: every line parses
    counts: dict[str, int] = {}
    for r in records:
        if r["frame"] in (None, 0):
            counts[r["path"]] = counts.get(r["path"], 0) + 1
    assert len(counts) == 7 and set(counts.values()) == {1}  # nothing twice
    assert "2 inputs skipped" in result.stderr
    again = run("classify", inputs, "--model", tiny_package, "-f", "jsonl", "-o", out, "--resume")
    assert len(jsonl(out)) == len(records) and "classified 0 images" in again.stderr


def test_resume_csv(tiny_package, inputs, tmp_path):
    out = tmp_path / "resume.csv"
    run("classify", inputs / "CT1_UNC.dcm", "--model", tiny_package, "-f", "csv", "-o", out)
    run("classify", inputs / "CT1_UNC.dcm", inputs / "MR1_UNC.dcm", "--model", tiny_package, "-f", "csv",
        "-o", out, "--resume")
    rows = list(csv.DictReader(out.open()))
    assert [Path(r["path"]).name for r in rows] == ["CT1_UNC.dcm"] * 2 + ["MR1_UNC.dcm"] * 2


def test_nifti_slice_option(tiny_package, data_dir, tmp_path):
    volume = data_dir / "totalseg_ct/volumes/example_ct_sm.nii.gz"
    out = tmp_path / "n.jsonl"
    run("classify", volume, "--model", tiny_package, "-f", "jsonl", "-o", out, "--slice", "4")
    records = jsonl(out)
    assert len(records) == 1 and records[0]["frame"] == 4 and records[0]["error"] is None


def test_export_and_onnx_backend(tiny_package, inputs, tmp_path):
    onnx_file = tmp_path / "tiny_package.onnx"
    assert "matches PyTorch" in run("export", tiny_package, "--onnx", onnx_file).stdout
    by_torch, by_onnx = tmp_path / "t.jsonl", tmp_path / "o.jsonl"
    run("classify", inputs / "CT1_UNC.dcm", "--model", tiny_package, "--backend", "torch", "-f", "jsonl", "-o", by_torch)
    run("classify", inputs / "CT1_UNC.dcm", "--model", onnx_file, "-f", "jsonl", "-o", by_onnx)
    a, b = jsonl(by_torch)[0], jsonl(by_onnx)[0]
    assert a["model_version"] == b["model_version"]
    for task, pred in a["predictions"].items():
        assert pred["probabilities"] == pytest.approx(b["predictions"][task]["probabilities"], abs=1e-4)


def test_unknown_model_is_a_clear_error(inputs):
    result = CliRunner().invoke(app, ["classify", str(inputs), "--model", "no-such-model"])
    assert result.exit_code == 2 and "model_not_found" in result.stderr


@need_bundled
def test_models_lists_the_bundled_models():
    out = run("models", "--json").stdout
    listed = {m["name"]: m for m in json.loads(out)}
    assert set(listed) >= BUNDLED
    assert listed["chest-view"]["tasks"] == {"view": ["frontal", "lateral"]}
    assert all(m["size_mb"] < 20 for m in listed.values())
    assert "ct-mr-region" in run("models").stdout


@need_bundled
def test_default_model_is_chosen_from_the_tags(inputs, dicom_zoo, tmp_path):
    os.symlink(dicom_zoo / "files/wg04/US1_UNC.dcm", inputs / "US1_UNC.dcm")
    os.symlink(get_testdata_file("rtplan.dcm"), inputs / "rtplan.dcm")
    out = tmp_path / "d.jsonl"
    result = run("classify", inputs, "-f", "jsonl", "-o", out)
    model = {Path(r["path"]).name: (r["model"], r["error"]["type"] if r["error"] else None)
             for r in jsonl(out)}
    assert model["CT1_UNC.dcm"] == ("ct-mr-region", None)
    assert model["MR1_UNC.dcm"] == ("ct-mr-region", None)
    assert model["CR-MONO1-10-chest.dcm"] == ("chest-view", None)
    assert model["medpix.jpg"] == ("ct-mr-region", None)
    assert model["US1_UNC.dcm"] == (None, "wrong_modality")
    assert model["rtplan.dcm"] == (None, "no_pixel_data")  # no pixels beats "no model for RTPLAN"
    assert "no --model" in result.stderr and "ct-mr-region" in result.stderr
