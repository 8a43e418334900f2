"""``radroute train`` end to end on a small OrganAMNIST subset."""
from __future__ import annotations

import json

from typer.testing import CliRunner

from radroute.cli import app
from radroute.models import ModelPackage
from tests.helpers import need_data, one_torch_thread  # noqa: F401  (autouse)




def test_train_scratch_then_features_from_that_package(tmp_path):
    npz = need_data("organamnist", "organamnist_trainval.npz")
    runner = CliRunner()
    common = ["--data", str(npz), "--size", "28", "--precision", "fp32", "--cache-dir", str(tmp_path / "cache"),
              "--max-train-samples", "300", "--no-progress", "--threads", "1"]
    res = runner.invoke(app, ["train", *common, "--out", str(tmp_path / "a"), "--arch", "menkovski2015",
                              "--epochs", "2", "--batch-size", "16", "--lr", "2e-3", "--augment", "roth2015",
                              "--balance"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout[res.stdout.index("{"):])
    assert summary["n_train"] == 300 and summary["n_val"] == 6491
    assert summary["validation"]["label"]["accuracy"] > 2 / 11
    pkg = ModelPackage.load(tmp_path / "a")
    assert pkg.training["data"]["augment"] == "roth2015" and pkg.training["data"]["balance"] is True
    command = pkg.training["command"]  # what the user typed, not the test runner's argv
    assert command.startswith("radroute train ") and "--arch menkovski2015" in command
    assert "--balance" in command and "--no-progress" in command and "--lr 0.002" in command
    assert (tmp_path / "a" / "splits.csv").is_file() and (tmp_path / "a" / "train_log.jsonl").is_file()

    res = runner.invoke(app, ["train", *common, "--out", str(tmp_path / "b"), "--mode", "features-logreg",
                              "--backbone", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    feat = ModelPackage.load(tmp_path / "b")
    assert feat.training["mode"] == "features-logreg" and feat.architecture == "menkovski2015"
    assert feat.metrics["label"]["accuracy"]["value"] > 2 / 11


def test_train_rejects_bad_options(tmp_path):
    npz = need_data("organamnist", "organamnist_trainval.npz")
    res = CliRunner().invoke(app, ["train", "--data", str(npz), "--out", str(tmp_path / "x"), "--mode", "magic"])
    assert res.exit_code != 0 and "magic" not in (tmp_path / "x").as_posix()
    res = CliRunner().invoke(app, ["train", "--data", str(npz), "--out", str(tmp_path / "y"),
                                   "--mode", "features-svm", "--size", "28", "--cache-dir", str(tmp_path / "c"),
                                   "--no-progress"])
    assert res.exit_code != 0 and "--backbone" in res.output
