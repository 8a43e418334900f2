"""Answers that DICOM tags give better than pixels, declared by a model package (``tag_rules``).

Two kinds, keyed by the task they change:

* ``{"from_tag": "modality"}``: a file's own tag (a :class:`~radroute.io.types.Metadata` field,
  e.g. its DICOM Modality) is trusted when it names one of the task's classes: that label, score
  1.0, ``source: "tag"``. Untagged inputs keep the image's answer.
* ``{"age_split": {"adult": "adult_chest", "pediatric": "pediatric_chest"}, "adult_years": 18}``:
  the image says "a chest film" (either label), the patient's age decides which half
  (PatientAge, else StudyDate - PatientBirthDate): the label of that age group, the score of
  both labels together, ``source: "tags"``.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from typing import Any

from radroute.inference.record import DECIMALS, TaskPrediction
from radroute.io.types import Metadata

_AGE = re.compile(r"^\s*(\d{1,3})\s*([YMWD])\s*$", re.IGNORECASE)
_DAYS = {"Y": 365.25, "M": 30.4375, "W": 7.0, "D": 1.0}


def age_in_years(meta: Metadata | None) -> float | None:
    """The patient's age from PatientAge (``045Y``, ``010M``, ``003W``, ``005D``), else from
    StudyDate - PatientBirthDate; ``None`` when neither is usable."""
    if meta is None:
        return None
    match = _AGE.match(meta.patient_age or "")
    if match:
        return int(match.group(1)) * _DAYS[match.group(2).upper()] / 365.25
    try:
        born, seen = (date(int(d[:4]), int(d[4:6]), int(d[6:8]))
                      for d in (meta.patient_birth_date or "", meta.study_date or ""))
    except (ValueError, TypeError):
        return None
    years = (seen - born).days / 365.25
    return years if 0 <= years < 150 else None


def _from_tag(pred: TaskPrediction, rule: Mapping[str, Any], meta: Metadata | None) -> TaskPrediction:
    value = getattr(meta, rule["from_tag"], None) if meta is not None else None
    label = str(value).strip().upper() if value else None
    classes = {c.upper(): c for c in pred.probabilities}
    if label not in classes:
        return pred
    label = classes[label]
    return TaskPrediction(label=label, score=1.0, source="tag", abstained=False,
                          probabilities={c: float(c == label) for c in pred.probabilities})


def _age_split(pred: TaskPrediction, rule: Mapping[str, Any], meta: Metadata | None,
               threshold: float) -> TaskPrediction:
    groups = rule["age_split"]
    if pred.label not in groups.values():
        return pred
    age = age_in_years(meta)
    if age is None:
        return pred
    label = groups["pediatric"] if age < float(rule.get("adult_years", 18)) else groups["adult"]
    score = round(sum(pred.probabilities[g] for g in groups.values()), DECIMALS)
    return replace(pred, label=label, score=score, source="tags", abstained=score < threshold)


def apply_tag_rules(predictions: dict[str, TaskPrediction], rules: Mapping[str, Mapping[str, Any]],
                    meta: Metadata | None, thresholds: Mapping[str, float]) -> dict[str, TaskPrediction]:
    """``predictions`` with each rule's task answered from the tags where they can."""
    out = dict(predictions)
    for task, rule in rules.items():
        if task not in out:
            continue
        if "from_tag" in rule:
            out[task] = _from_tag(out[task], rule, meta)
        elif "age_split" in rule:
            out[task] = _age_split(out[task], rule, meta, float(thresholds.get(task, 0.0)))
    return out
