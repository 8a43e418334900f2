"""End-to-end training on a small real OrganAMNIST subset (fp32, seconds)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from radroute.models import ModelPackage, create_model
from radroute.training import TrainConfig, Trainer, fit_package

CHANCE = 1 / 11


def _accuracy(pkg: ModelPackage, ds) -> float:
    model = pkg.build()
    x = torch.stack([ds[i][0] for i in range(len(ds))])
    y = np.array([int(ds[i][1][0]) for i in range(len(ds))])
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()
    return float((pred == y).mean())


def test_fit_package_end_to_end(organ_small, tmp_path):
    out = tmp_path / "organ-menkovski"
    cfg = TrainConfig(epochs=2, batch_size=16, lr=2e-3, precision="fp32", progress=False, seed=0)
    pkg = fit_package("menkovski2015", organ_small.tasks, organ_small.train, organ_small.val,
                      organ_small.preprocessing, out, cfg, data={"source": "organamnist subset"})

    loaded = ModelPackage.load(out)
    assert loaded.architecture == "menkovski2015" and loaded.tasks == organ_small.tasks
    assert loaded.preprocessing["size"] == 28
    assert loaded.training["data"] == {"source": "organamnist subset"}
    assert loaded.training["n_train"] == 300 and loaded.training["epochs_run"] == 2
    acc = _accuracy(loaded, organ_small.val)
    assert acc > 2 * CHANCE
    m = loaded.metrics["label"]
    assert m["accuracy"]["value"] == pytest.approx(acc, abs=1e-6)  # metrics are of the saved weights
    assert set(m["per_class"]) == set(organ_small.tasks["label"]) and "recall" in m["per_class"]["liver"]
    assert 0.0 <= loaded.thresholds["label"] <= 1.0
    assert m["abstention"]["n"] == 200
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log] == ["start", "epoch", "epoch", "end"]
    assert {"train_loss", "train_acc", "val_acc", "val_loss", "lr"} <= set(log[1])
    assert (out / "checkpoints" / "last.pt").is_file()
    assert pkg.version == loaded.version


def test_resume_gives_the_same_weights(organ_small, tmp_path):
    def run(out, until=None, resume=False):
        torch.manual_seed(123)
        model = create_model("roth2015", num_classes=11, widths=(8, 16, 16, 16, 16), fc_dim=32)
        cfg = TrainConfig(epochs=3, batch_size=64, lr=1e-3, precision="fp32", progress=False,
                          patience=None, seed=7)
        trainer = Trainer(model, organ_small.tasks, organ_small.train, organ_small.val, cfg, out_dir=out)
        result = trainer.fit(resume=resume, until_epoch=until)
        return trainer.model.state_dict(), result

    straight, r_straight = run(tmp_path / "a")
    _, r_first = run(tmp_path / "b", until=1)
    assert r_first.stop_reason == "until_epoch" and len(r_first.history) == 1
    resumed, r_resumed = run(tmp_path / "b", resume=True)
    assert len(r_resumed.history) == 3
    assert r_resumed.best_epoch == r_straight.best_epoch
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=0, atol=0)


def test_head_mode_trains_only_the_classifier(organ_small, tmp_path):
    torch.manual_seed(0)
    src = create_model("menkovski2015", num_classes=11)
    base = tmp_path / "base.safetensors"
    from safetensors.torch import save_file

    save_file(dict(src.state_dict()), str(base))
    cfg = TrainConfig(epochs=1, batch_size=64, lr=1e-2, mode="head", precision="fp32", progress=False)
    pkg = fit_package("menkovski2015", organ_small.tasks, organ_small.train, organ_small.val,
                      organ_small.preprocessing, tmp_path / "head", cfg, pretrained_path=base)
    after = pkg.state_dict()
    before = src.state_dict()
    assert torch.equal(after["features.0.weight"], before["features.0.weight"])
    assert torch.equal(after["fc.1.running_mean"], before["fc.1.running_mean"])  # BN frozen too
    assert not torch.equal(after["classifier.weight"], before["classifier.weight"])


def test_time_budget_stops_training(organ_small, tmp_path):
    model = create_model("roth2015", num_classes=11, widths=(8, 8, 8, 8, 8), fc_dim=16)
    cfg = TrainConfig(epochs=50, batch_size=16, precision="fp32", progress=False, time_budget_min=1e-6)
    result = Trainer(model, organ_small.tasks, organ_small.train, None, cfg).fit()
    assert result.stop_reason == "time_budget" and len(result.history) == 1
    assert result.history[0]["steps"] == 1
