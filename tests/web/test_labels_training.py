"""``radroute train`` reads the exported ``/api/labels.csv`` as it is: settled reviews of real
files from four patients become a (tiny, few-step) model package."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from radroute.cli import app as cli
from radroute.models import ModelPackage
from radroute.routing.config import load_config
from tests.helpers import need_data
from tests.web.conftest import AUTH, QUEUE_FILES, need_web_extra, route, router_config, with_patient

need_web_extra()
from fastapi.testclient import TestClient  # noqa: E402

from radroute.web.app import create_app  # noqa: E402


def test_train_on_exported_labels(tmp_path, tiny_model):
    files = [need_data("dicom_zoo", "files", *f) for f in QUEUE_FILES[:4]]
    copies = [c for p in range(4) for c in with_patient(files, tmp_path / f"in/{p}", p)]
    config = router_config(tmp_path, tiny_model, threshold=0.999999)  # everything to review
    cfg = load_config(config)
    route(cfg, copies)
    with TestClient(create_app(cfg), headers=AUTH) as client:
        items = client.get("/api/review").json()
        assert len(items) == len(copies) == 16
        for n, item in enumerate(items):
            region = ("head", "abdomen")[n % 2]
            res = client.post(f"/api/review/{item['id']}", json={"labels": {"region": region}})
            assert res.status_code == 200, res.text
        manifest = tmp_path / "labels.csv"
        manifest.write_text(client.get("/api/labels.csv").text)
    header = manifest.read_text().splitlines()[0]
    assert header == "path,patient_id,modality,region"
    res = CliRunner().invoke(cli, ["train", "--data", str(manifest), "--out", str(tmp_path / "pkg"),
                                   "--arch", "roth2015", "--size", "32", "--epochs", "1", "--batch-size", "4",
                                   "--precision", "fp32", "--threads", "1", "--no-progress",
                                   "--cache-dir", str(tmp_path / "cache"), "--patience", "0"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["n_train"] > 0
    package = ModelPackage.load(tmp_path / "pkg")
    assert package.tasks["region"] == ["abdomen", "head"]
    rows = [line.split(",") for line in (tmp_path / "pkg" / "splits.csv").read_text().splitlines()[1:]]
    assert len(rows) == 16 and len({r[1] for r in rows}) == 4  # grouped by the patients' salted hashes
    for patient in {r[1] for r in rows}:
        assert len({r[2] for r in rows if r[1] == patient}) == 1  # a patient's images share a split
