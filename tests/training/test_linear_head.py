"""Frozen features + linear SVM / logistic regression folded into the last layer."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from radroute.models import ModelPackage, create_model
from radroute.training import TrainConfig, fit_features_package, fit_linear_head


@pytest.fixture(scope="module")
def backbone_package(organ_small, tmp_path_factory):
    """A backbone package (quickly trained menkovski2015) standing in for a MedPix-trained one."""
    from radroute.training import fit_package

    out = tmp_path_factory.mktemp("backbone") / "pkg"
    cfg = TrainConfig(epochs=1, batch_size=32, lr=2e-3, precision="fp32", progress=False)
    return fit_package("menkovski2015", organ_small.tasks, organ_small.train, None,
                       organ_small.preprocessing, out, cfg)


def test_linear_head_matches_scikit_learn():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 6)) * [1, 5, 0.1, 2, 1, 1] + [0, 3, -1, 0, 0, 2]
    y3 = (x[:, 0] + 0.2 * x[:, 1] > 0.5).astype(int) + (x[:, 3] > 1)
    y2 = (x[:, 2] > -1).astype(int)
    y = np.stack([y3, np.where(rng.random(300) < 0.1, -1, y2)], 1)  # 2nd task has missing labels
    W, b, info = fit_linear_head(x, y, [3, 2], kind="logreg", C=1.0)
    assert W.shape == (5, 6) and b.shape == (5,)
    ref = LogisticRegression(C=1.0, max_iter=3000).fit(StandardScaler().fit_transform(x), y3)
    logits = x @ W.T + b
    assert (logits[:, :3].argmax(1) == ref.predict(StandardScaler().fit(x).transform(x))).mean() > 0.99
    mask = y[:, 1] >= 0
    assert (logits[mask, 3:].argmax(1) == y2[mask]).mean() > 0.95
    assert len(info["temperature"]) == 2 and all(t > 0 for t in info["temperature"])


@pytest.mark.parametrize("mode", ["features-svm", "features-logreg"])
def test_features_package_from_another_package(organ_small, backbone_package, tmp_path, mode):
    out = tmp_path / mode
    pkg = fit_features_package(backbone_package.path, organ_small.tasks, organ_small.train,
                               organ_small.val, organ_small.preprocessing, out, mode=mode,
                               config=TrainConfig(precision="fp32", progress=False))
    loaded = ModelPackage.load(out)
    assert loaded.architecture == "menkovski2015"
    assert loaded.training["backbone"]["package"] == str(backbone_package.path)
    assert loaded.training["mode"] == mode
    # the rebuilt network (features + folded linear layer) reproduces the stored metrics
    model = loaded.build()
    x = torch.stack([organ_small.val[i][0] for i in range(len(organ_small.val))])
    y = np.array([int(organ_small.val[i][1][0]) for i in range(len(organ_small.val))])
    with torch.no_grad():
        acc = float((model(x).argmax(1).numpy() == y).mean())
    assert acc == pytest.approx(loaded.metrics["label"]["accuracy"]["value"], abs=0.011)
    assert acc > 3 / 11
    # backbone weights are untouched; only the classifier changed
    before, after = backbone_package.state_dict(), loaded.state_dict()
    assert torch.equal(before["features.0.weight"], after["features.0.weight"])
    assert not torch.equal(before["classifier.weight"], after["classifier.weight"])


def test_features_from_an_imagenet_style_weights_file(organ_small, tmp_path):
    torch.manual_seed(0)
    rgb = create_model("mobilenetv3_small_100", num_classes=1000, in_chans=3)
    weights = tmp_path / "rgb.pth"
    torch.save(rgb.state_dict(), weights)
    pkg = fit_features_package("mobilenetv3_small_100", organ_small.tasks, organ_small.train,
                               organ_small.val, organ_small.preprocessing, tmp_path / "pkg",
                               mode="features-logreg", pretrained_path=weights,
                               config=TrainConfig(precision="fp32", progress=False))
    assert pkg.architecture == "mobilenetv3_small_100"
    assert pkg.build()(torch.zeros(2, 1, 28, 28)).shape == (2, 11)


def test_finetune_from_a_package_with_other_classes(organ_small, backbone_package, tmp_path):
    from radroute.training import fit_package

    tasks = {"coarse": ["abdomen", "chest", "other"]}
    coarse_of = {"liver": 0, "kidney-left": 0, "kidney-right": 0, "spleen": 0, "pancreas": 0,
                 "bladder": 0, "lung-left": 1, "lung-right": 1, "heart": 1}
    names = organ_small.tasks["label"]

    class Coarse(torch.utils.data.Dataset):
        def __init__(self, ds):
            self.ds = ds

        def __len__(self):
            return len(self.ds)

        def __getitem__(self, i):
            x, y = self.ds[i]
            return x, torch.tensor([coarse_of.get(names[int(y[0])], 2)])

    cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-3, mode="finetune", precision="fp32", progress=False)
    pkg = fit_package("ignored", tasks, Coarse(organ_small.train), Coarse(organ_small.val),
                      organ_small.preprocessing, tmp_path / "ft", cfg, backbone=backbone_package.path)
    assert pkg.architecture == "menkovski2015" and pkg.tasks == tasks
    assert pkg.training["backbone"]["package"] == str(backbone_package.path)
    assert pkg.state_dict()["classifier.weight"].shape == (3, 256)


def test_missing_imagenet_weights_are_a_clear_error(organ_small, tmp_path):
    from radroute.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="no pretrained weights"):
        fit_features_package("resnet18", organ_small.tasks, organ_small.train, organ_small.val,
                             organ_small.preprocessing, tmp_path / "x",
                             config=TrainConfig(precision="fp32", progress=False))
