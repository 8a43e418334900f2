"""The body-part vocabulary and the mapping of DICOM tags and free text onto it."""
from __future__ import annotations

import csv

import pytest

from radroute.vocab import BODY_PARTS, DICOM_TERM_FOR, body_part_from_term, normalise_body_part
from tests.helpers import data_root


@pytest.mark.parametrize("term, part", [
    ("CHEST", "chest"), ("chest", "chest"), ("THORAX", "chest"), ("HEAD", "head"), ("BRAIN", "head"),
    ("CSPINE", "spine"), ("L-SPINE", "spine"), ("LSSPINE", "spine"), ("WHOLE BODY", "whole_body"),
    ("WHOLEBODY", "whole_body"), ("ABDOMEN", "abdomen"), ("ABDOMENPELVIS", "abdomen"), ("HIP", "pelvis"),
    ("KNEE", "lower_limb"), ("TIBIAFIBULA", "lower_limb"), ("HAND", "upper_limb"), ("SHOULDER", "upper_limb"),
    ("BREAST", "breast"), ("NECK", "neck"), ("THYROID", "neck"), ("CHEST_TO_PELVIS", "chest"),
    ("HEADNECK", "head"), ("JAW", "head"), ("RADIUSULNA", "upper_limb"),
])
def test_defined_terms(term, part):
    assert body_part_from_term(term) == part
    assert normalise_body_part(term) == part


def test_extremity_is_ambiguous_and_descriptions_decide():
    assert normalise_body_part("EXTREMITY") == "unknown"
    assert normalise_body_part("EXTREMITY", "Non-ossifying fibroma of distal tibia") == "lower_limb"
    assert normalise_body_part("EXTREMITY", None, "WRIST PA") == "upper_limb"


@pytest.mark.parametrize("text, part", [
    ("CT, HEAD/BRAIN WO CONTRAST", "head"), ("RM DE CRANIO", "head"), ("MODALITYLUT - TEETH", "head"),
    ("XR C Spine Comp Min 4 Views", "spine"), ("Cervical LAT", "spine"), ("L3-S1^L1-L4", "spine"),
    ("Tomoscintigrafia PET total body", "whole_body"), ("Whole Body Bone", "whole_body"),
    ("CT Upper Abdomen with contrast", "abdomen"), ("US KIDNEY", "abdomen"), ("e+1 KNEE-RT.", "lower_limb"),
    ("RT ANKLE", "lower_limb"), ("SHOULDER", "upper_limb"), ("CT CHEST ABDOMEN PELVIS", "chest"),
    ("Mammo screening", "breast"), ("US NECK", "neck"), ("CXR PA", "chest"), ("HIP JOINT", "pelvis"),
    ("thoracic spine", "spine"), ("e+1", None), ("Survey_MST", None), ("cilinderbiopsie", None),
])
def test_free_text(text, part):
    assert normalise_body_part(None, text) == (part or "unknown")


def test_tag_beats_description_and_empty_is_unknown():
    assert normalise_body_part("CSPINE", "CT HEAD") == "spine"
    assert normalise_body_part(None, None, "") == "unknown"
    assert normalise_body_part("", "   ") == "unknown"


def test_dicom_term_round_trip():
    assert set(DICOM_TERM_FOR) == set(BODY_PARTS)
    for part, term in DICOM_TERM_FOR.items():
        if term is None:
            assert part == "unknown"
            continue
        assert len(term) <= 16 and term == term.upper()  # a valid CS value
        assert body_part_from_term(term) == part


def test_zoo_tags_map_to_the_visual_region_where_tags_are_honest():
    labels = data_root() / "dicom_zoo" / "labels.csv"
    if not labels.exists():
        pytest.skip(f"shared data not available: {labels}")
    region_to_part = {"chest": "chest", "head": "head", "knee": "lower_limb", "shoulder": "upper_limb",
                      "hip": "pelvis", "lower_leg": "lower_limb", "breast": "breast", "whole_body": "whole_body",
                      "abdomen": "abdomen", "lumbar_spine": "spine", "cervical_spine": "spine", "ankle": "lower_limb",
                      "dental": "head"}
    checked = 0
    for row in csv.DictReader(open(labels)):
        part = normalise_body_part(row["body_part_examined_tag"], row["study_description"], row["series_description"])
        expected = region_to_part.get(row["visual_region"])
        if part == "unknown" or expected is None or "mismatch" in row["note"] or "WARNING" in row["note"]:
            continue
        assert part == expected, row["file"]
        checked += 1
    assert checked >= 25
