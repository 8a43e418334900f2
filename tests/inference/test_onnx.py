"""ONNX export: metadata, dynamic batch, ONNX Runtime matching PyTorch on real files."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from pydicom.data import get_testdata_file

from radroute.errors import InvalidConfigError, ModelNotFoundError
from radroute.inference import load_model
from radroute.inference.onnx import EXPORT_TOLERANCE, OnnxBackend, cached_onnx, export_onnx
from radroute.models import ModelPackage


@pytest.fixture(scope="module")
def exported(tiny_package):
    """Exported once per session, into the (temporary) ONNX cache of the package."""
    return cached_onnx(ModelPackage.load(tiny_package))


def test_export_carries_the_package(exported, tiny_package):
    package = ModelPackage.load(tiny_package)
    meta = {p.key: p.value for p in onnx.load(str(exported)).metadata_props}
    config = json.loads(meta["radroute_config"])
    assert config["tasks"] == package.tasks
    assert config["preprocessing"] == package.preprocessing
    assert json.loads(meta["tasks"]) == package.tasks
    assert meta["model_version"] == package.version


def test_dynamic_batch_matches_torch(exported, tiny_package):
    torch_pred = load_model(tiny_package)
    backend = OnnxBackend(exported, threads=1)
    size = torch_pred.preprocessing.size
    for n in (1, 7):
        x = np.random.default_rng(n).normal(size=(n, 1, size, size)).astype(np.float32)
        expected = torch_pred._runner.logits(x)
        assert np.abs(backend.logits(x) - expected).max() <= EXPORT_TOLERANCE


def test_onnx_file_classifies_alone(exported, tiny_package, dicom_zoo):
    paths = [get_testdata_file("CT_small.dcm"), dicom_zoo / "files/wg04/MR1_UNC.dcm",
             dicom_zoo / "files/pydicom-data/emri_small_jpeg_ls_lossless.dcm"]
    by_torch = load_model(tiny_package, backend="torch").predict(paths)
    by_file = load_model(exported).predict(paths)
    assert by_file[0].model == by_torch[0].model
    assert by_file[0].model_version == by_torch[0].model_version
    assert len(by_file) == len(by_torch) == 12
    for a, b in zip(by_torch, by_file):
        assert (a.path, a.frame) == (b.path, b.frame)
        for task in a.predictions:
            pa, pb = a.task(task).probabilities, b.task(task).probabilities
            assert np.allclose(list(pa.values()), list(pb.values()), atol=1e-4)


def test_package_onnx_backend_exports_once_to_the_cache(tiny_package, exported):
    package = ModelPackage.load(tiny_package)
    mtime = exported.stat().st_mtime_ns
    assert cached_onnx(package) == exported and exported.stat().st_mtime_ns == mtime
    assert exported.name == f"tiny-{package.version}.onnx"
    predictor = load_model(tiny_package, backend="onnx")
    assert predictor.backend == "onnx"
    assert predictor.predict(get_testdata_file("MR_small.dcm"))[0].predictions


def test_export_refuses_a_mismatch(tiny_package, tmp_path, monkeypatch):
    """The 1e-4 check can fail: an exported graph that disagrees with PyTorch is not written."""
    import radroute.inference.onnx as onnx_module

    monkeypatch.setattr(onnx_module, "EXPORT_TOLERANCE", -1.0)
    with pytest.raises(InvalidConfigError):
        export_onnx(ModelPackage.load(tiny_package), tmp_path / "bad.onnx")
    assert not (tmp_path / "bad.onnx").exists()


def test_missing_onnx_file(tmp_path):
    with pytest.raises(ModelNotFoundError):
        load_model(tmp_path / "nothing.onnx")
