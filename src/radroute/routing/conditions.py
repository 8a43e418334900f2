"""The conditions of a routing rule: one pydantic model per kind, each testing itself.

A condition is a table in a rule's ``all`` or ``any`` list; the keys it has pick its class:
``tag`` with one of ``equals``/``in``/``contains``/``matches``/``exists``, ``label``/``min_score``/
``max_score``, ``abstained``, ``body_part`` or ``tag_body_part``. :meth:`Condition.matches` sees
an instance's tags (keyword -> text) and its prediction record (``None`` before classification).
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Union

from pydantic import AfterValidator, BeforeValidator, Discriminator, Field, Tag
from pydicom.datadict import tag_for_keyword
from pydicom.uid import UID

from radroute.routing.schema import ConfigModel, Names, Probability, Text
from radroute.vocab import BODY_PARTS, normalise_body_part

if TYPE_CHECKING:
    from radroute.inference.record import Prediction, TaskPrediction


def tag_body_part(tags: dict[str, str]) -> str:
    """The body part the tags claim, in the radroute vocabulary."""
    return normalise_body_part(tags.get("BodyPartExamined"), tags.get("StudyDescription"),
                               tags.get("SeriesDescription"), tags.get("ProtocolName"))


class Condition(ConfigModel):
    """One test of a rule; ``not = true`` negates it."""

    negate: bool = Field(False, alias="not")
    #: whether the test reads the prediction (tag-only tests are decided without the model)
    needs_prediction: ClassVar[bool] = True

    def matches(self, tags: dict[str, str], prediction: Prediction | None) -> bool:
        """Whether an instance with these tags and this prediction (``None``: none) passes."""
        return self._holds(tags, prediction) != self.negate

    def _holds(self, tags: dict[str, str], prediction: Prediction | None) -> bool:
        raise NotImplementedError


# ---- on a DICOM tag ------------------------------------------------------------------------------
def _keyword(name: str) -> str:
    if not tag_for_keyword(name):
        raise ValueError(f"unknown DICOM keyword {name!r} (use keywords such as 'Modality', "
                         "'BodyPartExamined', 'SOPClassUID', 'SeriesDescription')")
    return name


def _regex(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {value!r}: {exc}") from None


class TagCondition(Condition):
    """A test on one tag's value: case-insensitive, on the whole value or any multi-value
    component; ``SOPClassUID`` and ``TransferSyntaxUID`` also by their UID's name."""

    tag: Annotated[str, AfterValidator(_keyword)]
    needs_prediction: ClassVar[bool] = False

    def _holds(self, tags: dict[str, str], prediction: Prediction | None) -> bool:
        value = tags.get(self.tag)
        if not value:
            return False
        forms = {value.upper(), *(v.strip().upper() for v in value.split("\\"))}
        if self.tag in ("SOPClassUID", "TransferSyntaxUID"):
            forms.add(UID(value).name.upper())
        return self._test(forms)

    def _test(self, forms: set[str]) -> bool:
        raise NotImplementedError


class TagEquals(TagCondition):
    """``{ tag = "Modality", equals = "CT" }`` (a number is compared as its text)."""

    equals: Text

    def _test(self, forms: set[str]) -> bool:
        return self.equals.strip().upper() in forms


class TagIn(TagCondition):
    """``{ tag = "BodyPartExamined", in = ["HEAD", "BRAIN"] }``"""

    values: Names = Field(alias="in")

    def _test(self, forms: set[str]) -> bool:
        return any(v.strip().upper() in forms for v in self.values)


class TagContains(TagCondition):
    """``{ tag = "SeriesDescription", contains = "lung" }``"""

    contains: str

    def _test(self, forms: set[str]) -> bool:
        return any(self.contains.upper() in f for f in forms)


class TagMatches(TagCondition):
    """``{ tag = "SeriesDescription", matches = "head|brain" }`` (a regex, searched, any case)."""

    pattern: Annotated[re.Pattern, BeforeValidator(_regex)] = Field(alias="matches")

    def _test(self, forms: set[str]) -> bool:
        return any(self.pattern.search(f) for f in forms)


class TagExists(TagCondition):
    """``{ tag = "ContrastBolusAgent", exists = true }``: the tag is present and not empty."""

    exists: bool

    def _holds(self, tags: dict[str, str], prediction: Prediction | None) -> bool:
        return bool(tags.get(self.tag)) == self.exists


# ---- on the prediction ---------------------------------------------------------------------------
class TaskCondition(Condition):
    """A test on one task's answer (``task``), or on any task's when ``task`` is not given."""

    task: str | None = None

    def _answers(self, prediction: Prediction) -> list[TaskPrediction]:
        preds = prediction.predictions or {}
        if self.task is None:
            return list(preds.values())
        return [preds[self.task]] if self.task in preds else []


class LabelCondition(TaskCondition):
    """``{ task = "view", label = "frontal", min_score = 0.9 }``; an abstaining task never matches."""

    label: Names | None = None
    min_score: Probability | None = None
    max_score: Probability | None = None

    def _holds(self, tags: dict[str, str], prediction: Prediction | None) -> bool:
        if prediction is None or prediction.error:
            return False
        return any(not p.abstained and (self.label is None or p.label in self.label)
                   and (self.min_score is None or p.score >= self.min_score)
                   and (self.max_score is None or p.score <= self.max_score)
                   for p in self._answers(prediction))


class AbstainedCondition(TaskCondition):
    """``{ abstained = true }``: the prediction (or ``task``) abstained, or could not be made."""

    abstained: bool

    def _holds(self, tags: dict[str, str], prediction: Prediction | None) -> bool:
        return (prediction is None or prediction.is_abstained(self.task)) == self.abstained


# ---- on the body part ----------------------------------------------------------------------------
def _in_vocabulary(parts: tuple[str, ...]) -> tuple[str, ...]:
    bad = [p for p in parts if p not in BODY_PARTS]
    if bad:
        raise ValueError(f"not in the body-part vocabulary: {bad}; use one of {', '.join(BODY_PARTS)}")
    return parts


BodyParts = Annotated[Names, AfterValidator(_in_vocabulary)]


class BodyPartCondition(Condition):
    """``{ body_part = ["chest"] }``: the predicted body part."""

    body_part: BodyParts

    def _holds(self, tags: dict[str, str], prediction: Prediction | None) -> bool:
        return prediction is not None and not prediction.error and prediction.body_part in self.body_part


class TagBodyPartCondition(Condition):
    """``{ tag_body_part = ["chest"] }``: the body part the tags claim (:func:`tag_body_part`)."""

    tag_body_part: BodyParts
    needs_prediction: ClassVar[bool] = False

    def _holds(self, tags: dict[str, str], prediction: Prediction | None) -> bool:
        return tag_body_part(tags) in self.tag_body_part


# ---- which class a table is ----------------------------------------------------------------------
TAG_OPERATORS: dict[str, type[TagCondition]] = {
    "equals": TagEquals, "in": TagIn, "contains": TagContains, "matches": TagMatches, "exists": TagExists}
#: the keys that pick the other kinds, in order of precedence
KIND_KEYS: dict[str, type[Condition]] = {
    "label": LabelCondition, "min_score": LabelCondition, "max_score": LabelCondition,
    "abstained": AbstainedCondition, "body_part": BodyPartCondition, "tag_body_part": TagBodyPartCondition}


def condition_kind(value: Any) -> str | None:
    """``TagCondition`` or the class name a condition table is read as, from its keys."""
    if isinstance(value, Condition):
        return "TagCondition" if isinstance(value, TagCondition) else type(value).__name__
    if not isinstance(value, dict):
        return None
    if "tag" in value:
        return "TagCondition"
    return next((cls.__name__ for key, cls in KIND_KEYS.items() if key in value), None)


def tag_operator(value: Any) -> str | None:
    """The class name of a tag condition, from its one operator key."""
    if isinstance(value, TagCondition):
        return type(value).__name__
    ops = [cls for key, cls in TAG_OPERATORS.items() if key in value]
    return ops[0].__name__ if len(ops) == 1 else None


def _tagged_union(members: dict[str, Any], pick, error_type: str, message: str) -> Any:
    """A pydantic union of ``members`` (tag -> type) chosen by the callable ``pick``."""
    union = Union[tuple(Annotated[t, Tag(tag)] for tag, t in members.items())]  # type: ignore[valid-type]
    return Annotated[union, Discriminator(pick, custom_error_type=error_type,
                                          custom_error_message=message)]


AnyTagCondition = _tagged_union(
    {cls.__name__: cls for cls in (TagEquals, TagIn, TagContains, TagMatches, TagExists)}, tag_operator,
    "tag_operator", f"a tag condition needs exactly one of {', '.join(TAG_OPERATORS)}")

#: a condition table, validated as the class its keys pick
AnyCondition = _tagged_union(
    {"TagCondition": AnyTagCondition, "LabelCondition": LabelCondition,
     "AbstainedCondition": AbstainedCondition, "BodyPartCondition": BodyPartCondition,
     "TagBodyPartCondition": TagBodyPartCondition}, condition_kind,
    "condition_kind", "a condition needs 'tag', 'label'/'min_score', 'abstained', 'body_part' or 'tag_body_part'")

__all__ = ["AbstainedCondition", "AnyCondition", "AnyTagCondition", "BodyPartCondition", "Condition",
           "LabelCondition", "TagBodyPartCondition", "TagCondition", "TagContains", "TagEquals",
           "TagExists", "TagIn", "TagMatches", "TaskCondition", "condition_kind", "tag_body_part",
           "tag_operator"]
