"""Routing decisions: the first matching rule wins, abstentions go to review, the default catches the rest.

Rules see an instance as a dict of DICOM tags (keyword -> text) and, when a rule needs it, the
prediction JSON record of :mod:`radroute.inference`. :func:`decide` is lazy: while every rule
up to the first match reads tags only, it decides without a prediction; otherwise it returns
:data:`NEEDS_PREDICTION` so the caller classifies the image and asks again.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from radroute.routing.config import Condition, Rule, RouterConfig
from radroute.vocab import normalise_body_part

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


def tag_body_part(tags: dict[str, str]) -> str:
    """The body part the tags claim, in the radroute vocabulary."""
    return normalise_body_part(tags.get("BodyPartExamined"), tags.get("StudyDescription"),
                               tags.get("SeriesDescription"), tags.get("ProtocolName"))


def _match_value(cond: Condition, key: str, value: str | None) -> bool:
    if cond.exists is not None:
        return bool(value) == cond.exists
    if not value:
        return False
    candidates = {value.upper(), *(v.strip().upper() for v in value.split("\\"))}
    if key == "SOPClassUID" or key == "TransferSyntaxUID":
        candidates.add(UID(value).name.upper())
    if cond.equals is not None:
        return cond.equals.strip().upper() in candidates
    if cond.values is not None:
        return any(v.strip().upper() in candidates for v in cond.values)
    if cond.contains is not None:
        return any(cond.contains.upper() in c for c in candidates)
    if cond.pattern is not None:
        return any(cond.pattern.search(c) for c in candidates)
    return False


def _task_items(prediction: dict, task: str | None) -> list[tuple[str, dict]]:
    preds = prediction.get("predictions") or {}
    if task is None:
        return list(preds.items())
    return [(task, preds[task])] if task in preds else []


def is_abstained(prediction: dict | None, task: str | None = None) -> bool:
    """A prediction abstains when it failed, or (per task) when its top score is below threshold."""
    if prediction is None or prediction.get("error") or not prediction.get("predictions"):
        return True
    if task is None:
        return bool(prediction.get("abstained"))
    p = (prediction.get("predictions") or {}).get(task)
    return True if p is None else bool(p.get("abstained"))


def _match(cond: Condition, tags: dict[str, str], prediction: dict | None) -> bool:
    if cond.kind == "tag":
        hit = _match_value(cond, cond.key, tags.get(cond.key))
    elif cond.kind == "tag_body_part":
        hit = tag_body_part(tags) in cond.values
    elif cond.kind == "abstained":
        hit = is_abstained(prediction, cond.key) == cond.abstained
    elif prediction is None or prediction.get("error"):
        hit = False
    elif cond.kind == "body_part":
        hit = prediction.get("body_part") in cond.values
    else:  # label: an abstained task never matches a label condition
        hit = False
        for _, p in _task_items(prediction, cond.key):
            if p.get("abstained"):
                continue
            score = float(p.get("score") or 0.0)
            if ((cond.values is None or p.get("label") in cond.values)
                    and (cond.min_score is None or score >= cond.min_score)
                    and (cond.max_score is None or score <= cond.max_score)):
                hit = True
                break
    return hit != cond.negate


def rule_matches(rule: Rule, tags: dict[str, str], prediction: dict | None) -> bool:
    """``all`` conditions hold and, if there are ``any`` conditions, at least one does."""
    return (all(_match(c, tags, prediction) for c in rule.all)
            and (not rule.any or any(_match(c, tags, prediction) for c in rule.any)))


def decide(cfg: RouterConfig, tags: dict[str, str], prediction: dict | None = None,
           *, classified: bool | None = None) -> Decision | _NeedsPrediction:
    """The routing decision for one instance (or one series' aggregate).

    ``prediction`` is ``None`` when not classified yet; pass ``classified=True`` to decide
    anyway (a model-less dry run or a classification that could not run).
    """
    classified = prediction is not None if classified is None else classified
    if prediction is not None and not isinstance(prediction, dict):
        prediction = prediction.to_dict()  # TODO(cfg branch): conditions read the typed record
    for rule in cfg.rules:
        if rule.default:
            break
        if rule.needs_prediction and not classified:
            return NEEDS_PREDICTION
        if rule_matches(rule, tags, prediction):
            return Decision(rule.name, rule.destinations, "rule")
    if cfg.review_destination is not None:
        if not classified:
            return NEEDS_PREDICTION
        if is_abstained(prediction):
            return Decision("review", (cfg.review_destination,), "review")
    default = cfg.rules[-1]
    return Decision(default.name, default.destinations, "default")
