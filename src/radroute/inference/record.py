"""The prediction record: one typed :class:`Prediction` per classified image, built in one place.

Every producer (the predictor, the cascade of models, a failed read, a series aggregate) builds
it through :func:`make_prediction`, :meth:`Prediction.failed` or :meth:`Prediction.aggregate`, and
every writer (JSONL/CSV, the router's journal and rules, the web page) reads its attributes.
:meth:`Prediction.to_dict` is the JSON contract of docs/architecture.md: every field present,
``null`` when unknown.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

#: decimals of the scores and probabilities in a record
DECIMALS = 6


@dataclass
class TaskPrediction:
    """One task's answer: the top label, its score, every class's probability, abstention."""

    label: str
    score: float
    probabilities: dict[str, float]
    abstained: bool
    #: where the answer comes from: ``image`` (the model), ``tag`` (a DICOM tag, e.g. Modality),
    #: ``tags`` (the model, split by tags: a chest film's age group from PatientAge)
    source: str = "image"

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "score": self.score, "probabilities": dict(self.probabilities),
                "abstained": self.abstained, "source": self.source}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskPrediction:
        return cls(label=d["label"], score=float(d["score"]),
                   probabilities={k: float(v) for k, v in (d.get("probabilities") or {}).items()},
                   abstained=bool(d.get("abstained")), source=d.get("source") or "image")


@dataclass
class Prediction:
    """The record of one image (or one input that failed, or one series aggregate)."""

    path: str | None = None
    frame: int | None = None
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None
    model: str | None = None
    model_version: str | None = None
    #: every model that answered, in stage order: ``{"name", "version", "tasks": [...]}``; the
    #: last is ``model`` / ``model_version``
    models: list[dict[str, Any]] | None = None
    predictions: dict[str, TaskPrediction] | None = None
    abstained: bool | None = None
    body_part: str | None = None
    error: dict[str, str] | None = None
    #: series aggregates: how many instances' records were averaged (only in the JSON when set)
    instances: int | None = None

    # ---- JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The JSON record: every field present, ``null`` when unknown."""
        out = {
            "path": self.path, "frame": self.frame, "sop_instance_uid": self.sop_instance_uid,
            "series_instance_uid": self.series_instance_uid, "model": self.model,
            "model_version": self.model_version,
            "models": None if self.models is None else [dict(m) for m in self.models],
            "predictions": None if self.predictions is None
            else {t: p.to_dict() for t, p in self.predictions.items()},
            "abstained": self.abstained, "body_part": self.body_part,
            "error": dict(self.error) if self.error is not None else None,
        }
        if self.instances is not None:
            out["instances"] = self.instances
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Prediction:
        """The inverse of :meth:`to_dict` (records read back from a journal or a JSONL file)."""
        preds = d.get("predictions")
        return cls(path=d.get("path"), frame=d.get("frame"), sop_instance_uid=d.get("sop_instance_uid"),
                   series_instance_uid=d.get("series_instance_uid"), model=d.get("model"),
                   model_version=d.get("model_version"), models=d.get("models"),
                   predictions=None if preds is None
                   else {t: TaskPrediction.from_dict(p) for t, p in preds.items()},
                   abstained=d.get("abstained"), body_part=d.get("body_part"), error=d.get("error"),
                   instances=d.get("instances"))

    # ---- reading ---------------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        """Classified: no error and at least one task answered."""
        return self.error is None and bool(self.predictions)

    def task(self, name: str) -> TaskPrediction | None:
        return (self.predictions or {}).get(name)

    def is_abstained(self, task: str | None = None) -> bool:
        """Abstained on ``task`` (or on any task): also when the image failed or lacks the task."""
        if not self.ok:
            return True
        if task is None:
            return bool(self.abstained)
        p = self.task(task)
        return True if p is None else p.abstained

    # ---- building --------------------------------------------------------------------------------
    @classmethod
    def failed(cls, path: str | None, error: Mapping[str, str], *, model: str | None = None,
               model_version: str | None = None, **identity: Any) -> Prediction:
        """The record of an input that could not be classified."""
        return cls(path=path, model=model, model_version=model_version, error=dict(error), **identity)

    @classmethod
    def aggregate(cls, records: Sequence[Prediction], thresholds: Mapping[str, float],
                  body_part_map: Mapping[str, Mapping[str, str]]) -> Prediction:
        """One series-level record: per task, the mean of the instances' probabilities.

        A task abstains when its mean top probability is below ``thresholds[task]``. The body part
        is mapped from the mean predictions as for one image; when none maps, the most frequent
        body part of the instances (ties: the first in ``records`` order, never hash order).
        Failed instances are left out; when all failed, the first record is returned.
        """
        ok = [r for r in records if r.ok]
        if not ok:
            if records:
                return replace(records[0])
            return cls.failed(None, {"type": "unreadable", "message": "no instance to aggregate"})
        tasks: dict[str, list[str]] = {}
        for r in ok:
            for t, p in r.predictions.items():
                tasks.setdefault(t, list(p.probabilities))
        probs = {t: np.mean([[r.predictions[t].probabilities[c] for c in classes]
                             for r in ok if t in r.predictions], axis=0)
                 for t, classes in tasks.items()}
        first = ok[0]
        agg = make_prediction(probs, tasks, thresholds, body_part_map, model=first.model,
                              model_version=first.model_version, models=first.models,
                              series_instance_uid=first.series_instance_uid)
        for task, answer in agg.predictions.items():  # answers the tags gave stay the tags' answers
            answers = [r.predictions[task] for r in ok if task in r.predictions]
            if len({(a.label, a.source) for a in answers}) == 1 and answers[0].source != "image":
                score = round(float(np.mean([a.score for a in answers])), DECIMALS)
                agg.predictions[task] = replace(answer, label=answers[0].label, source=answers[0].source,
                                                score=score, abstained=score < float(thresholds.get(task, 0.0)))
        agg.abstained = any(t.abstained for t in agg.predictions.values())
        agg.body_part = body_part_of(agg.predictions, body_part_map)
        if agg.body_part is None:
            parts = Counter(r.body_part for r in ok if r.body_part)
            agg.body_part = parts.most_common(1)[0][0] if parts else None
        agg.instances = len(ok)
        return agg


def chain(stages: Sequence[Prediction]) -> Prediction:
    """One record from the records of a cascade's stages (in stage order) for the same image.

    Every stage's tasks, ``models`` in stage order, ``model`` / ``model_version`` of the last
    stage, abstained when any task is, the body part of the first stage that gives one.
    """
    first, last = stages[0], stages[-1]
    predictions: dict[str, TaskPrediction] = {}
    for stage in stages:
        for task, answer in (stage.predictions or {}).items():
            predictions.setdefault(task, answer)
    return replace(first, model=last.model, model_version=last.model_version,
                   models=[m for s in stages for m in (s.models or [])], predictions=predictions,
                   abstained=any(t.abstained for t in predictions.values()),
                   body_part=next((s.body_part for s in stages if s.body_part), None))


def make_prediction(probabilities: Mapping[str, np.ndarray], tasks: Mapping[str, Sequence[str]],
                    thresholds: Mapping[str, float], body_part_map: Mapping[str, Mapping[str, str]],
                    adjust: Callable[[dict[str, TaskPrediction]], dict[str, TaskPrediction]] | None = None,
                    **identity: Any) -> Prediction:
    """The record of one classified image from its per-task probabilities (``{task: (C,)}``).

    A task abstains when its top probability is under ``thresholds[task]``; ``adjust`` may then
    replace task answers (tag rules, see :mod:`radroute.inference.tag_rules`). The record abstains
    when any task does. ``body_part`` is the vocabulary term of the first task in
    ``body_part_map`` whose label is mapped and not abstained (else ``None``). ``identity``:
    ``path``, ``frame``, ``sop_instance_uid``, ``series_instance_uid``, ``model``,
    ``model_version``, ``models``.
    """
    predictions: dict[str, TaskPrediction] = {}
    for task, classes in tasks.items():
        p = np.asarray(probabilities[task], dtype=np.float64)
        top = int(np.argmax(p))
        predictions[task] = TaskPrediction(
            label=classes[top], score=round(float(p[top]), DECIMALS),
            probabilities={c: round(float(v), DECIMALS) for c, v in zip(classes, p)},
            abstained=bool(p[top] < float(thresholds.get(task, 0.0))))
    if adjust is not None:
        predictions = adjust(predictions)
    record = Prediction(predictions=predictions, **identity)
    record.abstained = any(t.abstained for t in predictions.values())
    record.body_part = body_part_of(predictions, body_part_map)
    return record


def body_part_of(predictions: Mapping[str, TaskPrediction],
                 body_part_map: Mapping[str, Mapping[str, str]]) -> str | None:
    """The body-part term of the first mapped task whose (non-abstained) label it maps."""
    for task, mapping in body_part_map.items():
        pred = predictions.get(task)
        if pred is not None and not pred.abstained and pred.label in mapping:
            return mapping[pred.label]
    return None


__all__ = ["DECIMALS", "Prediction", "TaskPrediction", "body_part_of", "chain", "make_prediction"]
