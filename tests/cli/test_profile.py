"""`radroute profile` end to end on real volumes."""
from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from radroute.cli import app
from radroute.models.package import bundled_names
from tests.helpers import need_data

need_model = pytest.mark.skipif("ct-slice-region" not in bundled_names(),
                                reason="bundled ct-slice-region not trained (scripts/train_ct_slice_region.py)")
SUMMARY_FIELDS = {"model", "model_version", "regions", "body_part_examined", "body_part"}
REGION_FIELDS = {"name", "slice_start", "slice_end", "z_start_mm", "z_end_mm"}


@need_model
def test_profile_writes_csv_summary_and_plot(tmp_path):
    volume = need_data("totalseg_ct", "volumes", "example_ct.nii.gz")
    out = tmp_path / "prof"
    result = CliRunner().invoke(app, ["profile", str(volume), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output

    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_FIELDS <= set(summary)
    assert summary["model"] == "ct-slice-region" and len(summary["model_version"]) == 12
    assert all(set(r) == REGION_FIELDS for r in summary["regions"])
    names = [r["name"] for r in summary["regions"]]
    assert names.index("abdomen") < names.index("pelvis")
    assert summary["body_part"] == "abdomen" and summary["body_part_examined"] == "ABDOMENPELVIS"
    assert json.loads(result.stdout.strip().splitlines()[-1]) == summary

    with open(out / "profile.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 112
    classes = summary["classes"]
    assert list(rows[0])[:2] == ["slice", "z_mm"] and list(rows[0])[2:2 + len(classes)] == classes
    z = [float(r["z_mm"]) for r in rows]
    assert z == sorted(z, reverse=True)  # superior -> inferior
    assert all(abs(sum(float(r[c]) for c in classes) - 1) < 1e-3 for r in rows)

    png = (out / "profile.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000


def test_mr_volume_exits_with_wrong_modality(tmp_path):
    volume = need_data("totalseg_ct", "volumes", "example_mr_sm.nii.gz")
    result = CliRunner().invoke(app, ["profile", str(volume), "--out", str(tmp_path / "p"), "--no-progress"])
    assert result.exit_code == 2
    assert "wrong_modality" in result.output
    assert not (tmp_path / "p" / "summary.json").exists()


def test_missing_volume_is_a_clean_error(tmp_path):
    result = CliRunner().invoke(app, ["profile", str(tmp_path / "nope.nii.gz"), "--out", str(tmp_path / "p"),
                                      "--no-progress"])
    assert result.exit_code == 2
    assert "not_found" in result.output or "unreadable" in result.output or "not_a_volume" in result.output
