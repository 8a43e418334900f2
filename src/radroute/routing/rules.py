"""Routing decisions: the first matching rule wins, abstentions go to review, the default catches the rest.

Rules see an instance as a dict of DICOM tags (keyword -> text) and, when a rule needs it, its
prediction record (:class:`~radroute.inference.record.Prediction`).
:func:`decide` is lazy: while every rule up to the first match reads tags only, it decides
without a prediction; otherwise it returns :data:`NEEDS_PREDICTION` so the caller classifies the
image and asks again. The conditions test themselves (:mod:`radroute.routing.conditions`).
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from radroute.errors import InvalidConfigError
from radroute.inference.record import Prediction
from radroute.routing.conditions import LabelCondition, TaskCondition, tag_body_part
from radroute.routing.config import Rule, RouterConfig

#: tags every instance record keeps (identifiers, routing basics); patient tags are never kept.
BASE_KEYWORDS = (
    "SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID", "Modality",
    "BodyPartExamined", "ViewPosition", "StudyDescription", "SeriesDescription", "ProtocolName",
    "SeriesNumber", "InstanceNumber", "StudyDate", "AccessionNumber",
)
#: tags that identify the patient: hashed in logs, never stored in the journal in clear.
PATIENT_KEYWORDS = ("PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs")


@dataclass(frozen=True)
class Decision:
    """Where an instance goes and why (``rule`` is the rule name, ``review`` or the default's name)."""

    rule: str
    destinations: tuple[str, ...]
    reason: str = "rule"          # "rule" | "review" | "default"

    def to_dict(self) -> dict:
        return {"rule": self.rule, "destinations": list(self.destinations), "reason": self.reason}


class _NeedsPrediction:
    def __repr__(self) -> str:
        return "NEEDS_PREDICTION"


NEEDS_PREDICTION = _NeedsPrediction()


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(_text(v) for v in value)
    return "" if value is None else str(value).strip()


def tags_from_dataset(ds: Dataset, keywords: Iterable[str] = ()) -> dict[str, str]:
    """The routing tags of ``ds`` as text (multi-values joined by ``\\``); absent tags are left out."""
    tags: dict[str, str] = {}
    for kw in dict.fromkeys([*BASE_KEYWORDS, *keywords]):
        if kw in PATIENT_KEYWORDS or kw not in ds:
            continue
        elem = ds.data_element(kw)
        if elem is None or elem.VR == "SQ" or elem.value is None:
            continue
        tags[kw] = _text(elem.value)
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts:
        tags["TransferSyntaxUID"] = str(ts)
    return tags


def rule_matches(rule: Rule, tags: dict[str, str], prediction: Prediction | None) -> bool:
    """``all`` conditions hold and, if there are ``any`` conditions, at least one does."""
    return rule.matches(tags, prediction)


def decide(cfg: RouterConfig, tags: dict[str, str], prediction: Prediction | None = None,
           *, classified: bool | None = None) -> Decision | _NeedsPrediction:
    """The routing decision for one instance (or one series' aggregate).

    ``prediction`` is ``None`` when not classified yet; pass ``classified=True`` to decide
    anyway (a model-less dry run or a classification that could not run).
    """
    classified = prediction is not None if classified is None else classified
    for rule in cfg.rules:
        if rule.default:
            break
        if rule.needs_prediction and not classified:
            return NEEDS_PREDICTION
        if rule.matches(tags, prediction):
            return Decision(rule.name, rule.destinations, "rule")
    if cfg.review_destination is not None:
        if not classified:
            return NEEDS_PREDICTION
        if prediction is None or prediction.is_abstained():
            return Decision("review", (cfg.review_destination,), "review")
    default = cfg.rules[-1]
    return Decision(default.name, default.destinations, "default")


def validate_rules_against_tasks(cfg: RouterConfig, tasks: dict[str, list[str]], model_name: str) -> None:
    """Label and abstention conditions must name tasks and classes the model has (checked at start).

    ``tasks``: the model's task -> class names (empty: nothing is known, nothing is checked).
    """
    if not tasks:
        return
    every = sorted({c for cs in tasks.values() for c in cs})
    for rule in cfg.rules:
        for cond in rule.conditions:
            if not isinstance(cond, TaskCondition):
                continue
            if cond.task is not None and cond.task not in tasks:
                raise InvalidConfigError(
                    f"rule {rule.name!r}: the model {model_name!r} has no task {cond.task!r} "
                    f"(tasks: {', '.join(tasks)})", cfg.source_path)
            classes = tasks[cond.task] if cond.task else every
            labels = cond.label if isinstance(cond, LabelCondition) else None
            bad = [v for v in labels or () if v not in classes]
            if bad:
                raise InvalidConfigError(
                    f"rule {rule.name!r}: unknown label(s) {bad} for task {cond.task or 'any'!r} "
                    f"of model {model_name!r} (classes: {', '.join(classes)})", cfg.source_path)


__all__ = ["BASE_KEYWORDS", "NEEDS_PREDICTION", "PATIENT_KEYWORDS", "Decision", "decide",
           "rule_matches", "tag_body_part", "tags_from_dataset", "validate_rules_against_tasks"]
