"""Rule conditions: the keys of a table pick its class, each class tests tags or a prediction record."""
from __future__ import annotations

import tomllib

import pytest
from pydantic import TypeAdapter

from radroute.errors import InvalidConfigError
from radroute.inference.record import Prediction, TaskPrediction
from radroute.routing import conditions as c
from radroute.routing.config import parse_config
from radroute.routing.rules import decide, validate_rules_against_tasks
from tests.routing.test_config import MINIMAL

CONDITION = TypeAdapter(c.AnyCondition)


def read(table: dict) -> c.Condition:
    return CONDITION.validate_python(table)


@pytest.mark.parametrize("table, cls", [
    ({"tag": "Modality", "equals": "CT"}, c.TagEquals),
    ({"tag": "Modality", "in": ["CT", "MR"]}, c.TagIn),
    ({"tag": "SeriesDescription", "contains": "ax"}, c.TagContains),
    ({"tag": "SeriesDescription", "matches": "head|brain"}, c.TagMatches),
    ({"tag": "ContrastBolusAgent", "exists": True}, c.TagExists),
    ({"task": "view", "label": "frontal"}, c.LabelCondition),
    ({"min_score": 0.5}, c.LabelCondition),
    ({"max_score": 0.5, "not": True}, c.LabelCondition),
    ({"task": "view", "abstained": True}, c.AbstainedCondition),
    ({"body_part": "chest"}, c.BodyPartCondition),
    ({"tag_body_part": ["head", "neck"]}, c.TagBodyPartCondition),
])
def test_the_keys_pick_the_class(table, cls):
    cond = read(table)
    assert type(cond) is cls
    assert cond.needs_prediction == (cls in (c.LabelCondition, c.AbstainedCondition, c.BodyPartCondition))


def test_values_are_read_as_written():
    assert read({"tag": "Modality", "in": "CT"}).values == ("CT",)
    assert read({"tag": "SeriesNumber", "equals": 3}).equals == "3"
    assert read({"body_part": "chest"}).body_part == ("chest",)
    assert read({"tag": "Modality", "equals": "CT", "not": True}).negate


def prediction(error: bool = False, **tasks: tuple[str, float, bool]) -> Prediction:
    if error:
        return Prediction.failed("x", {"type": "unreadable", "message": "x"})
    preds = {t: TaskPrediction(label, score, {label: score}, abstained)
             for t, (label, score, abstained) in tasks.items()}
    return Prediction(predictions=preds, abstained=any(p.abstained for p in preds.values()),
                      body_part="chest")


TAGS = {"Modality": "CT", "ImageType": "ORIGINAL\\PRIMARY\\AXIAL", "SeriesDescription": "Thorax 1.0",
        "SOPClassUID": "1.2.840.10008.5.1.4.1.1.2", "BodyPartExamined": "SKULL"}


@pytest.mark.parametrize("table, hit", [
    ({"tag": "Modality", "equals": "ct"}, True),
    ({"tag": "Modality", "equals": "CT", "not": True}, False),
    ({"tag": "ImageType", "equals": "axial"}, True),               # a multi-value component
    ({"tag": "SOPClassUID", "equals": "CT Image Storage"}, True),  # a UID by its name
    ({"tag": "Modality", "in": ["MR", "CT"]}, True),
    ({"tag": "Modality", "in": "MR"}, False),
    ({"tag": "SeriesDescription", "contains": "thor"}, True),
    ({"tag": "SeriesDescription", "matches": r"^thorax \d"}, True),
    ({"tag": "StudyDescription", "matches": "."}, False),          # absent: never matches
    ({"tag": "StudyDescription", "exists": False}, True),
    ({"tag": "Modality", "exists": True}, True),
    ({"tag_body_part": "head"}, True),                              # SKULL -> head
    ({"tag_body_part": "chest", "not": True}, True),
])
def test_tag_conditions(table, hit):
    assert read(table).matches(TAGS, None) is hit


@pytest.mark.parametrize("table, hit", [
    ({"task": "view", "label": "frontal"}, True),
    ({"task": "view", "label": ["lateral", "frontal"], "min_score": 0.9}, False),
    ({"task": "view", "label": "frontal", "max_score": 0.9}, True),
    ({"label": "CT"}, False),                     # any task, but 'modality' abstained
    ({"task": "modality", "label": "CT"}, False),
    ({"task": "nope", "label": "CT"}, False),
    ({"min_score": 0.7}, True),
    ({"task": "view", "label": "frontal", "not": True}, False),
    ({"abstained": True}, True),                  # one task abstained
    ({"task": "view", "abstained": False}, True),
    ({"task": "nope", "abstained": True}, True),  # a missing task counts as abstained
    ({"body_part": ["chest", "head"]}, True),
    ({"body_part": "head"}, False),
])
def test_prediction_conditions(table, hit):
    pred = prediction(view=("frontal", 0.8, False), modality=("CT", 0.5, True))
    assert read(table).matches({}, pred) is hit


def test_no_or_a_failed_prediction():
    for table in ({"min_score": 0.0}, {"body_part": "chest"}):
        assert not read(table).matches({}, None) and not read(table).matches({}, prediction(error=True))
        assert read({**table, "not": True}).matches({}, None)
    assert read({"abstained": True}).matches({}, None)
    assert read({"task": "view", "abstained": True}).matches({}, prediction(error=True))


def test_decide_on_a_record():
    cfg = parse_config(tomllib.loads(MINIMAL.replace(
        "[[rules]]", '[classifier]\nmodel = "m"\n\n[[rules]]\nname = "frontal"\ndestinations = ["out"]\n'
        'all = [ { task = "view", label = "frontal" } ]\n\n[[rules]]', 1)))
    pred = prediction(view=("frontal", 0.8, False))
    assert decide(cfg, {}, pred).rule == "frontal"
    assert decide(cfg, {}, prediction(view=("lateral", 0.8, False))).reason == "default"


def test_rules_are_checked_against_the_model_tasks():
    cfg = parse_config(tomllib.loads(MINIMAL.replace(
        "[[rules]]", '[classifier]\nmodel = "m"\n\n[[rules]]\nname = "v"\ndestinations = ["out"]\n'
        'all = [ { task = "view", label = ["frontal", "PA"] } ]\n\n[[rules]]', 1)))
    validate_rules_against_tasks(cfg, {}, "m")  # nothing known: nothing checked
    with pytest.raises(InvalidConfigError, match=r"rule 'v': unknown label\(s\) \['PA'\] for task 'view'"):
        validate_rules_against_tasks(cfg, {"view": ["frontal", "lateral"]}, "m")
    with pytest.raises(InvalidConfigError, match="has no task 'view'"):
        validate_rules_against_tasks(cfg, {"region": ["head"]}, "m")


def rule_with(condition: str) -> dict:
    return tomllib.loads(MINIMAL.replace("[[rules]]", '[classifier]\nmodel = "m"\n\n[[rules]]\nname = "x"\n'
                                         f'destinations = ["out"]\nany = [ {condition} ]\n\n[[rules]]', 1))


def problem(data: dict) -> str:
    with pytest.raises(InvalidConfigError) as err:
        parse_config(data)
    assert err.value.code == "invalid_config"
    return err.value.message


@pytest.mark.parametrize("condition, message", [
    ('{ tag = "Modality", equals = "CT" }, { task = "view", min_score = 1.5 }',
     "rules[0] (x).any[1].min_score: must be <= 1, got 1.5"),
    ('{ tag = "Modality", in = ["CT", 3] }', "rules[0] (x).any[0].in[1]: expected str, got 3"),
    ('{ tag = "Modality", in = 3 }', "rules[0] (x).any[0].in: expected str or list, got 3"),
    ('{ tag = "Modality", exists = "yes" }', "rules[0] (x).any[0].exists: expected bool, got 'yes'"),
    ('{ tag = "Modality", equals = true }',
     "rules[0] (x).any[0].equals: expected str or int or float, got True"),
    ('{ tag = "Modality", equals = "CT", not = 1 }', "rules[0] (x).any[0].not: expected bool, got 1"),
    ('{ tag = "Modality", equals = "CT", in = ["CT"] }',
     "rules[0] (x).any[0]: a tag condition needs exactly one of equals, in, contains, matches, exists"),
    ('{ task = "view" }', "rules[0] (x).any[0]: a condition needs 'tag', 'label'/'min_score', 'abstained', "
                          "'body_part' or 'tag_body_part'"),
    ('{ abstained = true, label = "x" }', "rules[0] (x).any[0]: unknown key(s): abstained"),
])
def test_condition_errors_name_their_key(condition, message):
    assert problem(rule_with(condition)) == message


@pytest.mark.parametrize("edit, message", [
    (lambda d: d["destinations"][0].update(port=104, host="h"),
     "destinations[0] (out): unknown key(s): host, port"),
    (lambda d: d["destinations"].append({"name": "p", "type": "dicom", "host": "h", "port": "104",
                                         "ae_title": "P"}),
     "destinations[1] (p).port: expected int, got '104'"),
    (lambda d: d["destinations"].append({"name": "w", "type": "stow", "url": "https://x", "verify_tls": 1}),
     "destinations[1] (w).verify_tls: expected bool or str, got 1"),
    (lambda d: d["destinations"].append({"name": "out", "type": "folder", "path": "x"}),
     "destinations[1].name: destination name 'out' is used twice"),
    (lambda d: d["destinations"][0].pop("type"), "destinations[0] (out).type: required key is missing"),
    (lambda d: d["router"].update(series_max_classified=0),
     "router.series_max_classified: must be > 0, got 0"),
    (lambda d: d.update(rules=[{"default": True, "destinations": ["x"]}]),  # unnamed: rule-<index>
     "rules[0] (rule-0).destinations: unknown destination 'x'; defined: out"),
    (lambda d: d.update(tag_correction={"view_position_map": {"lateral": 1}}),
     "tag_correction.view_position_map.lateral: expected str, got 1"),
    (lambda d: d.update(rules=[]),
     "rules: exactly one rule must have 'default = true', and it must be the last rule"),
    (lambda d: d.update(watch=[1]), "watch: expected dict, got [1]"),
])
def test_other_errors_name_their_key(edit, message):
    data = tomllib.loads(MINIMAL)
    edit(data)
    assert problem(data) == message
