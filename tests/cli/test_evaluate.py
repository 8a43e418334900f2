"""`radroute evaluate` and `radroute robustness` end to end: a tiny roth2015 trained for a few
seconds on real OrganAMNIST images, evaluated on the official validation split."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from radroute.cli import app
from radroute.evaluation import load_labelled
from radroute.models import ModelPackage, create_model
from tests.helpers import need_data

ARCH_KWARGS = {"widths": [8, 16, 16, 16, 16], "fc_dim": 32, "pool_size": 2, "drop_rate": 0.0}
PRE = {"size": 28, "keep_aspect": True, "window": "auto", "mean": 0.5, "std": 0.25}


@pytest.fixture(scope="module")
def organ_npz() -> Path:
    return need_data("organamnist", "organamnist_trainval.npz")


def organ_classes(npz: Path) -> list[str]:
    names = json.loads((npz.parent / "classes.json").read_text())
    return [names[str(i)] for i in range(len(names))]


@pytest.fixture(scope="module")
def organ_model(organ_npz, tmp_path_factory) -> Path:
    """roth2015 trained a few seconds on 2000 OrganAMNIST images; task 'plane' has no labels here."""
    torch.manual_seed(0)
    data = np.load(organ_npz)
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(data["train_labels"]))[:2000]
    x = torch.from_numpy((data["train_images"][idx].astype(np.float32) / 255 - 0.5) / 0.25)[:, None]
    y = torch.from_numpy(data["train_labels"][idx, 0].astype(np.int64))
    tasks = {"organ": organ_classes(organ_npz), "plane": ["axial", "coronal"]}
    model = create_model("roth2015", num_classes=13, in_chans=1, **ARCH_KWARGS)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(2):
        for b in range(0, len(x), 100):
            loss = torch.nn.functional.cross_entropy(model(x[b:b + 100])[:, :11], y[b:b + 100])
            opt.zero_grad()
            loss.backward()
            opt.step()
    path = tmp_path_factory.mktemp("pkg") / "organ"
    ModelPackage(name="organ-test", architecture="roth2015", tasks=tasks, preprocessing=PRE,
                 arch_kwargs=ARCH_KWARGS).save(path, model.state_dict())
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("RADROUTE_CACHE", str(tmp_path_factory.getbasetemp() / "radroute-cache"))


def run(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def direct_probs(model_dir: Path, images_u8: np.ndarray) -> np.ndarray:
    """The 'organ' probabilities computed without the evaluation code path."""
    from radroute.inference import load_model

    pred = load_model(model_dir)
    x = np.stack([pred.preprocessing.from_array(a.astype(np.float32) / 255) for a in images_u8])
    return pred.predict_arrays(x)["organ"]


def test_evaluate_npz_val_split(organ_model, organ_npz, tmp_path):
    out = tmp_path / "report"
    result = run("evaluate", "--model", organ_model, "--data", organ_npz, "--task", "organ",
                 "--split", "val", "--limit", 400, "--out", out, "--resamples", 1000,
                 "--tsne-points", 80)
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["tasks"]) == ["organ"]  # 'plane' has no labels in this data: no section
    assert m["info"]["command"].startswith("radroute evaluate ") and "--split val" in m["info"]["command"]
    organ = m["tasks"]["organ"]
    assert organ["n"] == 400 and m["info"]["split"] == "val" and m["info"]["unreadable"] == 0

    # the same 400 validation images, predicted directly: identical accuracy
    manifest = load_labelled(str(organ_npz), split="val", splits=None, task="organ", limit=400, seed=0)
    rows = [int(s.source.split(":")[-1]) for s in manifest.samples]
    assert all(s.source.startswith("npz:val:") for s in manifest.samples)
    data = np.load(organ_npz)
    probs = direct_probs(organ_model, data["val_images"][rows])
    y = data["val_labels"][rows, 0]
    correct = int((probs.argmax(1) == y).sum())
    assert organ["accuracy"]["k"] == correct
    assert organ["accuracy"]["value"] > 0.25  # well above chance (1/11; ~0.41 measured)
    assert organ["accuracy"]["ci_low"] < organ["accuracy"]["value"] < organ["accuracy"]["ci_high"]
    assert np.asarray(organ["confusion_matrix"]).sum() == 400
    assert organ["features"]["n"] == 80 and organ["features"]["dim"] == 32

    figs = organ["figures"]
    assert set(figs) == {"roc", "confusion", "reliability", "tsne"}  # 11 classes: no histogram
    assert all((out / f).is_file() for f in figs.values())
    md = (out / "report.md").read_text()
    assert "## Task `organ`" in md and "Task `plane`" not in md
    assert f"({correct}/400)" in md
    assert "organ" in result.output and "accuracy" in result.output


def test_evaluate_csv_multitask_skips_missing_labels(organ_model, organ_npz, tmp_path):
    """PNG files + CSV with two tasks; 'plane' is labelled for half the images only."""
    data = np.load(organ_npz)
    classes = organ_classes(organ_npz)
    folder = tmp_path / "pngs"
    folder.mkdir()
    rows = []
    for i in range(40):
        Image.fromarray(data["val_images"][i]).save(folder / f"{i}.png")
        rows.append({"path": f"{i}.png", "organ": classes[data["val_labels"][i, 0]],
                     "plane": ("axial" if i % 4 else "coronal") if i < 20 else "", "split": "val"})
    with open(folder / "labels.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["path", "organ", "plane", "split"])
        w.writeheader()
        w.writerows(rows)
    out = tmp_path / "report"
    run("evaluate", "-m", organ_model, "-d", folder / "labels.csv", "--out", out,
        "--resamples", 500, "--no-tsne")
    m = json.loads((out / "metrics.json").read_text())
    assert list(m["tasks"]) == ["organ", "plane"]
    assert m["tasks"]["organ"]["n"] == 40
    plane = m["tasks"]["plane"]
    assert plane["n"] == 20 and plane["per_class"]["coronal"]["support"] == 5
    assert plane["youden"] is not None and "probability_histogram" in plane["figures"]
    probs = direct_probs(organ_model, data["val_images"][:40])
    assert m["tasks"]["organ"]["accuracy"]["k"] == int((probs.argmax(1) == data["val_labels"][:40, 0]).sum())
    md = (out / "report.md").read_text()
    assert "## Task `plane`" in md and "### Youden cutoff (positive class `coronal`)" in md


def test_robustness_npz(organ_model, organ_npz, tmp_path):
    out = tmp_path / "robust"
    run("robustness", "-m", organ_model, "-d", organ_npz, "--task", "organ", "--limit", 60,
        "-p", "rotate_180", "-p", "occlude_left", "-p", "crop_80", "-p", "text_PORTABLE", "--out", out)
    r = json.loads((out / "robustness.json").read_text())
    organ = r["tasks"]["organ"]
    assert [row["name"] for row in organ["perturbations"]] == ["text_PORTABLE", "rotate_180", "occlude_left", "crop_80"]
    assert r["tasks"]["plane"]["baseline_accuracy"] is None  # no labels for 'plane'

    manifest = load_labelled(str(organ_npz), split="val", splits=None, task="organ", limit=60, seed=0)
    rows = [int(s.source.split(":")[-1]) for s in manifest.samples]
    data = np.load(organ_npz)
    images = data["val_images"][rows]
    base = direct_probs(organ_model, images).argmax(1)
    flipped = direct_probs(organ_model, images[:, ::-1, ::-1]).argmax(1)
    rot = organ["perturbations"][1]
    assert rot["changed"]["k"] == int((base != flipped).sum())
    assert rot["accuracy"]["k"] == int((flipped == data["val_labels"][rows, 0]).sum())
    assert organ["baseline_accuracy"]["k"] == int((base == data["val_labels"][rows, 0]).sum())
    md = (out / "robustness.md").read_text()
    assert "| rotated 180 degrees counter-clockwise | rotation |" in md
    assert (out / "perturbations.png").is_file()


def test_evaluate_rejects_bad_input(organ_model, organ_npz, tmp_path):
    result = CliRunner().invoke(app, ["evaluate", "-m", str(organ_model), "-d", str(organ_npz),
                                      "--split", "test", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "no samples in split" in result.output
    result = CliRunner().invoke(app, ["robustness", "-m", str(organ_model), "-d", str(organ_npz),
                                      "-p", "spin", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "unknown" in result.output


def test_evaluate_folder_source_with_a_broken_file(organ_model, organ_npz, dicom_zoo, tmp_path):
    """Folder per class (named by --task); a truncated DICOM is counted, not fatal."""
    data = np.load(organ_npz)
    classes = organ_classes(organ_npz)
    root = tmp_path / "folders"
    n_images = 0
    for k in (3, 6):  # heart, liver
        (root / classes[k]).mkdir(parents=True)
        for i in np.flatnonzero(data["val_labels"][:, 0] == k)[:12]:
            Image.fromarray(data["val_images"][i]).save(root / classes[k] / f"{i}.png")
            n_images += 1
    whole = (dicom_zoo / "files" / "wg04" / "CT1_UNC.dcm").read_bytes()
    (root / classes[6] / "broken.dcm").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "report"
    run("evaluate", "-m", organ_model, "-d", root, "--task", "organ", "--split", "all", "--out", out,
        "--resamples", 200, "--no-tsne", "--no-figures")
    m = json.loads((out / "metrics.json").read_text())
    assert m["info"]["unreadable"] == 1 and m["info"]["images"] == n_images + 1
    organ = m["tasks"]["organ"]
    assert organ["n"] == n_images == 24
    assert organ["per_class"]["heart"]["support"] == 12 and organ["per_class"]["liver"]["support"] == 12
    assert organ["per_class"]["bladder"]["auc"] is None  # absent class: null, not a number
    assert organ["figures"] == {}
