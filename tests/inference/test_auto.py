"""The cascade: the model chosen from the tags, then the models its answers lead to; tag rules."""
from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from radroute.inference import AutoPredictor, ModelPolicy
from tests.inference.tiny import make_constant_package

XRAY = {"body_part": ["chest", "pelvis", "head"],
        "pham_group": ["abdominal", "adult_chest", "pediatric_chest", "spine", "others"]}
AGE_RULE = {"pham_group": {"age_split": {"adult": "adult_chest", "pediatric": "pediatric_chest"},
                           "adult_years": 18}}


def package(root: Path, name: str, tasks, answers, **kw) -> str:
    make_constant_package(root / name, tasks, answers, **kw)
    return str(root / name)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade")
    identity = {"body_part": {c: c for c in XRAY["body_part"]}}
    return {
        "chest": package(root, "xray-chest", XRAY, {"body_part": "chest", "pham_group": "adult_chest"},
                         body_part_map=identity, tag_rules=AGE_RULE),
        "pelvis": package(root, "xray-pelvis", XRAY, {"body_part": "pelvis", "pham_group": "others"},
                          body_part_map=identity, tag_rules=AGE_RULE),
        "view": package(root, "view", {"view": ["frontal", "lateral"]}, {"view": "lateral"},
                        body_part_map={"view": {"frontal": "chest", "lateral": "chest"}}),
        "ctmr": package(root, "ctmr", {"modality": ["CT", "MR"], "region": ["head", "thorax", "abdomen"]},
                        {"modality": "MR", "region": "head"}, tag_rules={"modality": {"from_tag": "modality"}},
                        body_part_map={"region": {"head": "head", "thorax": "chest", "abdomen": "abdomen"}}),
        "type": package(root, "image-type", {"image_type": ["radiograph", "ct", "mr"]},
                        {"image_type": "radiograph"}, body_part_map={}),
    }


def policy(models, xray: str) -> ModelPolicy:
    return ModelPolicy(by_modality={"CR": models[xray], "CT": models["ctmr"], "MR": models["ctmr"]},
                       untagged=models["type"],
                       then={models[xray]: ("body_part", {"chest": models["view"]}),
                             models["type"]: ("image_type", {"radiograph": models[xray], "ct": models["ctmr"]})})


def test_a_chest_radiograph_goes_on_to_the_view_model(models, dicom_zoo):
    auto = AutoPredictor(policy(models, "chest"))
    rec = auto.predict(dicom_zoo / "files/wg04/RG1_J2KI.dcm")[0]
    assert [m["name"] for m in rec.models] == [models["chest"], models["view"]]
    assert rec.model == models["view"] and rec.body_part == "chest"
    assert set(rec.predictions) == {"body_part", "pham_group", "view"}
    assert rec.task("view").label == "lateral" and rec.task("body_part").source == "image"


def test_a_hip_never_gets_a_view(models, dicom_zoo):
    auto = AutoPredictor(policy(models, "pelvis"))
    rec = auto.predict(dicom_zoo / "files/wg04/RG2_J2KR.dcm")[0]
    assert rec.to_dict()["models"] == [{"name": models["pelvis"], "version": rec.model_version,
                                       "tasks": ["body_part", "pham_group"]}]
    assert "view" not in rec.predictions and rec.body_part == "pelvis"
    assert models["view"] not in auto._predictors


def test_untagged_images_pass_the_image_type_stage(models, data_dir):
    auto = AutoPredictor(policy(models, "chest"))
    rec = auto.predict(data_dir / "medpix2/images/MPX1009_synpic46283.jpg")[0]
    assert [m["name"] for m in rec.models] == [models["type"], models["chest"], models["view"]]
    assert rec.task("image_type").label == "radiograph" and rec.body_part == "chest"


def test_pham_group_age_from_the_tags(models, dicom_zoo, tmp_path):
    src = pydicom.dcmread(dicom_zoo / "files/wg04/RG1_J2KI.dcm")
    paths = []
    for name, tags in (("child", {"PatientAge": "010Y"}), ("baby", {"PatientAge": "007M"}),
                       ("born", {"PatientBirthDate": "20150301", "StudyDate": "20250101"}),
                       ("adult", {"PatientAge": "045Y"}), ("unknown", {})):
        ds = src.copy()
        for key in ("PatientAge", "PatientBirthDate", "StudyDate"):
            if key in ds:
                del ds[key]
        for key, value in tags.items():
            setattr(ds, key, value)
        ds.save_as(tmp_path / f"{name}.dcm")
        paths.append(tmp_path / f"{name}.dcm")
    records = AutoPredictor(policy(models, "chest")).predict(paths)
    got = [(r.task("pham_group").label, r.task("pham_group").source) for r in records]
    assert got == [("pediatric_chest", "tags"), ("pediatric_chest", "tags"), ("pediatric_chest", "tags"),
                   ("adult_chest", "tags"), ("adult_chest", "image")]
    # the score is that of "a chest film", whichever age half the tags chose
    chest = records[0].task("pham_group").probabilities
    assert records[0].task("pham_group").score == pytest.approx(chest["adult_chest"] + chest["pediatric_chest"])


def test_a_dicom_modality_tag_is_trusted(models, dicom_zoo, data_dir):
    auto = AutoPredictor(policy(models, "chest"))
    ct = auto.predict(dicom_zoo / "files/wg04/CT1_UNC.dcm")[0]
    assert ct.task("modality").label == "CT" and ct.task("modality").source == "tag"
    assert ct.task("modality").score == 1.0 and ct.task("region").source == "image"
    auto_ct = AutoPredictor(ModelPolicy(by_modality={}, untagged=models["ctmr"]))
    untagged = auto_ct.predict(data_dir / "medpix2/images/MPX1009_synpic46283.jpg")[0]
    assert untagged.task("modality").label == "MR" and untagged.task("modality").source == "image"


def test_records_and_errors_in_input_order(models, dicom_zoo):
    auto = AutoPredictor(policy(models, "chest"))
    paths = [dicom_zoo / "files/wg04/US1_UNC.dcm", dicom_zoo / "files/wg04/RG1_J2KI.dcm",
             dicom_zoo / "files/wg04/CT1_UNC.dcm", dicom_zoo / "nope.dcm"]
    records = auto.predict(paths, workers=1, batch_size=2)
    assert [r.path for r in records] == [str(p) for p in paths]
    assert records[0].error["type"] == "wrong_modality" and records[0].model is None
    assert records[3].error["type"] == "not_found"
    assert records[1].model == models["view"] and records[2].model == models["ctmr"]
