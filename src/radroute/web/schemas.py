"""The REST API's request and response bodies (they make the OpenAPI schema FastAPI serves)."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

Reason = Literal["abstained", "disagreement"]
State = Literal["pending", "settled"]


class TaskAnswer(BaseModel):
    label: str
    score: float
    probabilities: dict[str, float]
    abstained: bool
    source: Optional[str] = None


class ReviewItem(BaseModel):
    """An instance in the review queue (``id``: the router's instance id)."""

    id: int
    sop_instance_uid: str
    series_instance_uid: Optional[str]
    modality: Optional[str]
    reason: Reason
    #: the model's answer per task when the instance was decided
    predictions: Optional[dict[str, TaskAnswer]]
    body_part: Optional[str]
    model: Optional[str]
    #: ``{"field", "tag", "tag_value", "predicted"}`` for reason ``disagreement``
    disagreement: Optional[dict[str, Any]]
    #: Modality, BodyPartExamined, ViewPosition and the descriptions (never patient data)
    tags: dict[str, Optional[str]]
    #: root-relative path of the PNG thumbnail
    thumbnail_url: str
    state: State
    verdict: Optional[Literal["accepted", "corrected", "not_medical"]]
    #: the settled labels per task (``null`` while pending and for "not medical")
    labels: Optional[dict[str, str]]
    settled_by: Optional[str]
    settled_at: Optional[float]
    queued_at: float
    #: the rule the instance was (last) routed by
    rule: Optional[str]


class ReviewAction(BaseModel):
    """Exactly one of: ``{"labels": {task: label}}`` (tasks not named keep the model's label),
    ``{"accept": true}`` (the prediction is right), ``{"not_medical": true}``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"labels": {"region": "abdomen"}}, {"accept": True}, {"not_medical": True}]})

    labels: Optional[dict[str, str]] = None
    accept: bool = False
    not_medical: bool = False

    @model_validator(mode="after")
    def _exactly_one(self) -> ReviewAction:
        if sum((self.labels is not None, self.accept, self.not_medical)) != 1:
            raise ValueError('give exactly one of "labels", "accept": true, "not_medical": true')
        return self


class Problem(BaseModel):
    detail: str


class Unprocessable(BaseModel):
    """A request the API cannot act on: invalid parameters (``detail`` lists them), or labels the
    model does not have (``allowed``: every label per task)."""

    detail: str | list[dict[str, Any]]
    allowed: Optional[dict[str, list[str]]] = None


class Conflict(BaseModel):
    """The review was settled already; ``item`` says how and by whom."""

    detail: str
    item: ReviewItem


class Status(BaseModel):
    """The JSON of ``radroute status --json``."""

    model_config = ConfigDict(extra="allow")

    instances: dict[str, int] = Field(description="instances per state")
    deliveries: dict[str, dict[str, int]] = Field(description="per destination, deliveries per state")
    disagreements: int
    recent_errors: list[dict[str, Any]]
    review: dict[str, int] = Field(description="review queue entries per state")


class Health(BaseModel):
    status: Literal["ok"]


__all__ = ["Conflict", "Health", "Problem", "Reason", "ReviewAction", "ReviewItem", "State", "Status",
           "TaskAnswer", "Unprocessable"]
