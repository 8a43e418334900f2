"""The Prediction record: JSON round trip, abstention, aggregation (deterministic ties)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np

from radroute.inference.record import Prediction, TaskPrediction, make_prediction
from tests.helpers import REPO

TASKS = {"region": ["head", "chest", "abdomen"], "view": ["frontal", "lateral"]}
MAP = {"region": {"head": "head", "chest": "chest", "abdomen": "abdomen"}}


def record(region, view=(0.5, 0.5), **identity) -> Prediction:
    return make_prediction({"region": np.array(region), "view": np.array(view)}, TASKS,
                           {"region": 0.5, "view": 0.0}, MAP, **identity)


def test_fields_and_json_round_trip():
    rec = record([0.1, 0.7, 0.2], path="a.dcm", model="m", model_version="v")
    d = rec.to_dict()
    assert list(d) == ["path", "frame", "sop_instance_uid", "series_instance_uid", "model",
                       "model_version", "models", "predictions", "abstained", "body_part", "error"]
    assert d["predictions"]["region"] == {"label": "chest", "score": 0.7, "abstained": False, "source": "image",
                                          "probabilities": {"head": 0.1, "chest": 0.7, "abdomen": 0.2}}
    assert d["body_part"] == "chest" and d["abstained"] is False
    assert Prediction.from_dict(json.loads(json.dumps(d))) == rec


def test_abstention_and_failures():
    unsure = record([0.4, 0.35, 0.25])
    assert unsure.abstained and unsure.is_abstained("region") and not unsure.is_abstained("view")
    assert unsure.body_part is None  # an abstained task maps to no body part
    failed = Prediction.failed("x.dcm", {"type": "not_dicom", "message": "no"}, model="m")
    assert failed.to_dict()["predictions"] is None and failed.to_dict()["abstained"] is None
    assert failed.is_abstained() and failed.is_abstained("region") and not failed.ok
    assert TaskPrediction.from_dict({"label": "a", "score": 1, "probabilities": {"a": 1}, "abstained": 0}
                                    ).abstained is False


def test_aggregate_means_probabilities_and_leaves_out_failures():
    records = [record([0.1, 0.8, 0.1], series_instance_uid="s", model="m"),
               record([0.3, 0.4, 0.3], series_instance_uid="s", model="m"),
               Prediction.failed("bad.dcm", {"type": "unreadable", "message": "x"})]
    agg = Prediction.aggregate(records, {"region": 0.5}, MAP)
    assert agg.instances == 2 and agg.series_instance_uid == "s" and agg.model == "m"
    assert agg.task("region").label == "chest" and agg.task("region").score == 0.6
    assert agg.body_part == "chest" and agg.to_dict()["instances"] == 2
    only_failed = Prediction.aggregate(records[2:], {}, MAP)
    assert only_failed.error["type"] == "unreadable"


TIE = """
import numpy as np
from radroute.inference.record import Prediction, make_prediction
tasks = {"region": ["head", "chest", "abdomen"]}
# every instance's own body part is mapped from its own confident label, but the mean abstains:
recs = [make_prediction({"region": np.array(p)}, tasks, {"region": 0.6}, {"region": {c: c for c in tasks["region"]}})
        for p in ([0.05, 0.9, 0.05], [0.05, 0.05, 0.9], [0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.05, 0.05, 0.9])]
print(Prediction.aggregate(recs, {"region": 0.6}, {}).body_part)
"""


def test_series_body_part_does_not_depend_on_the_hash_seed():
    """Ties between the instances' body parts (chest 2, abdomen 2) are broken by instance order."""
    answers = set()
    for seed in ("0", "1", "2", "3", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(REPO / "src")}
        out = subprocess.run([sys.executable, "-c", TIE], capture_output=True, text=True, env=env, check=True)
        answers.add(out.stdout.strip())
    assert answers == {"chest"}
