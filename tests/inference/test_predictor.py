"""Predictor: the JSON record contract on real files, abstention, errors, inputs, workers."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from radroute.inference import Prediction, Predictor, load_model
from radroute.io import read_image

RECORD_FIELDS = {"path", "frame", "sop_instance_uid", "series_instance_uid", "model",
                 "model_version", "models", "predictions", "abstained", "body_part", "error"}
TASK_FIELDS = {"label", "score", "probabilities", "abstained", "source"}


def js(records: list[Prediction]) -> list[dict]:
    """The JSON records (what ``classify --format jsonl`` writes)."""
    assert all(isinstance(r, Prediction) for r in records)
    return [r.to_dict() for r in records]


def check_record(rec: dict, predictor: Predictor) -> None:
    """Every field of docs/architecture.md present, with consistent values."""
    assert set(rec) == RECORD_FIELDS
    assert rec["model"] == predictor.name and rec["model_version"] == predictor.version
    if rec["error"] is not None:
        assert rec["predictions"] is None and rec["abstained"] is None and rec["models"] is None
        assert set(rec["error"]) == {"type", "message"} and rec["error"]["type"]
        return
    assert rec["models"] == [{"name": predictor.name, "version": predictor.version,
                              "tasks": list(predictor.package.tasks)}]
    assert set(rec["predictions"]) == set(predictor.package.tasks)
    for task, pred in rec["predictions"].items():
        assert set(pred) == TASK_FIELDS and pred["source"] == "image"
        classes = predictor.package.tasks[task]
        assert list(pred["probabilities"]) == classes
        assert pred["label"] == max(pred["probabilities"], key=pred["probabilities"].get)
        assert pred["score"] == pytest.approx(max(pred["probabilities"].values()))
        assert sum(pred["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    assert rec["abstained"] == any(p["abstained"] for p in rec["predictions"].values())


@pytest.fixture(scope="module")
def predictor(tiny_package) -> Predictor:
    return load_model(tiny_package)


def test_records_on_real_files(predictor, dicom_zoo, data_dir):
    paths = [dicom_zoo / "files/wg04/CT1_UNC.dcm", dicom_zoo / "files/wg04/MR2_J2KR.dcm",
             dicom_zoo / "files/pydicom-data/emri_small.dcm",          # 10 frames
             dicom_zoo / "files/wg04/RG3_JPLY.dcm",                    # 12-bit JPEG: typed error
             data_dir / "medpix2/images/MPX1009_synpic46283.jpg",
             dicom_zoo / "files/does-not-exist.dcm"]
    records = js(predictor.predict(paths))
    for rec in records:
        check_record(rec, predictor)
    by_path = {}
    for rec in records:
        by_path.setdefault(rec["path"], []).append(rec)
    assert [r["path"] for r in records][0] == str(paths[0])  # input order is kept
    ct = by_path[str(paths[0])][0]
    ds = pydicom.dcmread(paths[0], stop_before_pixels=True)
    assert ct["frame"] is None and ct["error"] is None
    assert ct["sop_instance_uid"] == ds.SOPInstanceUID
    assert ct["series_instance_uid"] == ds.SeriesInstanceUID
    assert [r["frame"] for r in by_path[str(paths[2])]] == list(range(10))
    assert by_path[str(paths[3])][0]["error"]["type"] in ("unsupported_transfer_syntax", "corrupt_pixel_data")
    jpeg = by_path[str(paths[4])][0]
    assert jpeg["sop_instance_uid"] is None and jpeg["predictions"] is not None
    assert by_path[str(paths[5])][0]["error"]["type"] == "not_found"


def test_pydicom_test_files(predictor):
    ct, rtplan = get_testdata_file("CT_small.dcm"), get_testdata_file("rtplan.dcm")
    good, bad = js(predictor.predict([ct, rtplan]))
    check_record(good, predictor)
    assert good["predictions"] is not None
    assert bad["predictions"] is None and bad["error"]["type"] == "no_pixel_data"


def test_abstention_threshold(tiny_package):
    path = get_testdata_file("CT_small.dcm")
    never = js(load_model(tiny_package, threshold=0.0).predict(path))[0]
    always = js(load_model(tiny_package, threshold=1.01).predict(path))[0]
    assert never["abstained"] is False and never["body_part"] in ("head", "chest", "abdomen")
    assert always["abstained"] is True and always["body_part"] is None
    assert all(p["abstained"] for p in always["predictions"].values())
    assert always["predictions"]["region"]["label"] == never["predictions"]["region"]["label"]


def test_calibrated_threshold_comes_from_package(tmp_path):
    from tests.inference.tiny import make_tiny_package

    make_tiny_package(tmp_path / "p", thresholds={"modality": 0.0, "region": 0.999})
    rec = load_model(tmp_path / "p").predict(get_testdata_file("MR_small.dcm"))[0]
    assert rec.task("modality").abstained is False
    assert rec.task("region").abstained is True and rec.abstained is True and rec.is_abstained()


def test_images_arrays_and_paths_agree(predictor):
    path = get_testdata_file("MR_small.dcm")
    pp = predictor.preprocessing
    image = read_image(path, size=pp.size, keep_aspect=pp.keep_aspect, window=pp.window)
    from_path, from_image, from_array, from_input = js(predictor.predict(
        [path, image, image.pixels, pp.from_image(image)]))
    assert from_image["sop_instance_uid"] == from_path["sop_instance_uid"]
    assert from_array["path"] is None and from_array["sop_instance_uid"] is None
    for rec in (from_image, from_array, from_input):
        for task, pred in from_path["predictions"].items():
            assert rec["predictions"][task]["probabilities"] == pytest.approx(pred["probabilities"], abs=1e-5)


def test_worker_processes_give_the_same_records(predictor, dicom_zoo):
    paths = sorted((dicom_zoo / "files/pydicom").glob("MR_small*.dcm")) + [dicom_zoo / "nope.dcm"]
    inline = js(predictor.predict(paths, batch_size=4, workers=0))
    parallel = js(predictor.predict(paths * 3, batch_size=4, workers=2))
    assert [r["path"] for r in parallel] == [r["path"] for r in inline] * 3
    for a, b in zip(inline, parallel[: len(inline)]):
        assert a == b


def test_nifti_slices(predictor, data_dir):
    volume = data_dir / "totalseg_ct/volumes/example_mr_sm.nii.gz"
    every = js(predictor.predict(volume))
    one = js(predictor.predict(volume, frames=3))
    assert len(every) > 10 and [r["frame"] for r in every] == list(range(len(every)))
    assert len(one) == 1 and one[0]["frame"] == 3
    assert one[0]["predictions"] == every[3]["predictions"]
    out_of_range = js(predictor.predict(volume, frames=10_000))
    assert out_of_range[0]["error"] is not None


def test_predict_arrays_and_features(predictor):
    size = predictor.preprocessing.size
    x = np.random.default_rng(0).normal(size=(5, 1, size, size)).astype(np.float32)
    probs = predictor.predict_arrays(x)
    assert set(probs) == {"modality", "region"}
    assert probs["region"].shape == (5, 3) and np.allclose(probs["region"].sum(1), 1, atol=1e-5)
    assert predictor.features(x).shape[0] == 5
