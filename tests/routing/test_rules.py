"""Rule matching on real headers and prediction records: first match, all/any, abstention -> review."""
from __future__ import annotations

import tomllib

import pydicom
import pytest

from radroute.inference.record import Prediction

from radroute.routing.config import parse_config
from radroute.routing.rules import NEEDS_PREDICTION, decide, tags_from_dataset
from tests.helpers import need_data

CONFIG = """
[router]
spool = "/tmp/unused"
review_destination = "review"

[classifier]
model = "unused"

[[destinations]]
name = "a"
type = "folder"
path = "/tmp/a"

[[destinations]]
name = "b"
type = "folder"
path = "/tmp/b"

[[destinations]]
name = "review"
type = "folder"
path = "/tmp/review"

[[rules]]
name = "ct-by-sop-class-name"
destinations = ["a"]
all = [ { tag = "SOPClassUID", equals = "CT Image Storage" }, { tag = "Modality", equals = "ct" } ]

[[rules]]
name = "head-words"
destinations = ["b"]
any = [ { tag = "StudyDescription", matches = "brain|head" }, { tag_body_part = "head" } ]

[[rules]]
name = "confident-frontal"
destinations = ["a", "b"]
all = [ { task = "view", label = "frontal", min_score = 0.9 } ]

[[rules]]
name = "not-frontal"
destinations = ["b"]
all = [ { task = "view", label = "frontal", not = true }, { abstained = false } ]

[[rules]]
name = "default"
default = true
destinations = ["a"]
"""


def record(label: str, score: float, abstained: bool = False, error: bool = False) -> Prediction:
    """A prediction record as radroute.inference writes it (docs/architecture.md)."""
    return Prediction.from_dict(record_json(label, score, abstained, error))


def record_json(label: str, score: float, abstained: bool, error: bool) -> dict:
    if error:
        return {"path": "x", "frame": None, "sop_instance_uid": None, "series_instance_uid": None,
                "model": "m", "model_version": "v", "predictions": None, "abstained": True,
                "body_part": None, "error": {"type": "unreadable", "message": "x"}}
    other = "lateral" if label == "frontal" else "frontal"
    return {"path": "x", "frame": None, "sop_instance_uid": None, "series_instance_uid": None,
            "model": "m", "model_version": "v",
            "predictions": {"view": {"label": label, "score": score,
                                     "probabilities": {label: score, other: 1 - score},
                                     "abstained": abstained}},
            "abstained": abstained, "body_part": "chest", "error": None}


@pytest.fixture(scope="module")
def cfg():
    return parse_config(tomllib.loads(CONFIG))


def header(*parts) -> dict:
    ds = pydicom.dcmread(need_data("dicom_zoo", "files", *parts), stop_before_pixels=True, force=True)
    return tags_from_dataset(ds)


def test_tag_rules_decide_without_a_prediction(cfg):
    d = decide(cfg, header("pydicom", "CT_small.dcm"))
    assert (d.rule, d.destinations, d.reason) == ("ct-by-sop-class-name", ("a",), "rule")
    assert decide(cfg, header("pydicom", "dicomdir_CT_head_16x16.dcm")).rule == "ct-by-sop-class-name"
    mr = header("pydicom", "MR_small.dcm")
    assert decide(cfg, {**mr, "StudyDescription": "MR BRAIN W/O"}).rule == "head-words"  # 'matches'
    assert decide(cfg, {**mr, "BodyPartExamined": "SKULL"}).rule == "head-words"  # tag_body_part
    d = decide(cfg, header("fo-dicom", "CT-MONO2-16-ankle.dcm"))  # CT modality, SC SOP class
    assert d is NEEDS_PREDICTION  # no tag rule matched: the next rule needs the model


def test_patient_tags_are_never_kept():
    tags = header("pydicom", "dicomdir_CT_head_16x16.dcm")
    assert "PatientName" not in tags and "PatientID" not in tags
    assert tags["Modality"] == "CT" and tags["TransferSyntaxUID"] == "1.2.840.10008.1.2.1"


def test_label_rules_scores_and_abstention(cfg):
    mr = header("pydicom", "MR_small.dcm")
    assert decide(cfg, mr, record("frontal", 0.95)).rule == "confident-frontal"
    # below min_score: not the confident rule; 'not frontal' fails too (it is frontal) -> default
    assert decide(cfg, mr, record("frontal", 0.6)).rule == "default"
    assert decide(cfg, mr, record("lateral", 0.8)).rule == "not-frontal"
    # abstained: label conditions never match, 'abstained = false' fails -> review destination
    d = decide(cfg, mr, record("frontal", 0.95, abstained=True))
    assert (d.rule, d.destinations, d.reason) == ("review", ("review",), "review")
    d = decide(cfg, mr, record("", 0, error=True))
    assert d.reason == "review"


def test_default_needs_the_model_when_review_is_configured(cfg):
    mr = header("pydicom", "MR_small.dcm")
    assert decide(cfg, mr) is NEEDS_PREDICTION
    assert decide(cfg, mr, None, classified=True).reason == "review"  # no model could run
