"""The review queue: uncertain instances shown to a person, settled labels, the training manifest.

The router queues an instance (``routing/journal.py``) when its prediction abstained or disagrees
with its tags. A person settles it here: accept the prediction, pick other labels, or mark it
"not a medical image". Every write goes through :class:`~radroute.routing.journal.Journal`
methods (one transaction each), so the router may run at the same time; of two people settling
the same instance the first wins, the other learns it was settled already.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass

import numpy as np

from radroute.inference.record import Prediction, make_prediction
from radroute.routing.config import RouterConfig
from radroute.routing.decide import final_decision
from radroute.routing.journal import Journal, ReviewNotFound, ReviewRow, ReviewSettled
from radroute.routing.logs import log_event

#: the tags a reviewer sees (never the patient's name or ID)
SHOWN_TAGS = ("Modality", "BodyPartExamined", "ViewPosition", "StudyDescription", "SeriesDescription",
              "ProtocolName")


@dataclass(frozen=True)
class Vocabulary:
    """The router's model's tasks (ordered ``{task: class names}``) and body-part maps."""

    tasks: dict[str, list[str]]
    body_part_map: dict[str, dict[str, str]]


def model_vocabulary(cfg: RouterConfig) -> Vocabulary:
    """What the router's ``[classifier] model`` can answer, read from the package config(s)
    without loading weights (``auto``: every model the bundled policy may choose)."""
    if cfg.classifier is None or not cfg.needs_prediction:  # the router never runs the model
        return Vocabulary({}, {})
    model = cfg.classifier.model
    if model == "auto":
        from radroute.inference.auto import AutoPredictor

        found = AutoPredictor()
    elif model.endswith(".onnx"):
        from radroute.routing.classify import load_classifier

        found = load_classifier(model, "onnx", 1)
    else:
        from radroute.models.package import ModelPackage

        found = ModelPackage.load(model)
    return Vocabulary({t: list(c) for t, c in found.tasks.items()},
                      {t: dict(m) for t, m in found.body_part_map.items()})


class LabelsNotAllowed(ValueError):
    """Labels the model does not have; ``allowed`` is ``{task: [labels]}``."""

    def __init__(self, message: str, allowed: dict[str, list[str]]):
        super().__init__(message)
        self.allowed = allowed


def thumbnail_url(instance_id: int) -> str:
    return f"/api/review/{instance_id}/thumbnail.png"


def item_dict(row: ReviewRow) -> dict:
    """The JSON of one queue entry (every field present, ``null`` when unknown)."""
    prediction = row.prediction
    return {
        "id": row.id,
        "sop_instance_uid": row.sop_instance_uid,
        "series_instance_uid": row.series_instance_uid,
        "modality": row.tags.get("Modality"),
        "reason": row.reason,
        "predictions": None if prediction.predictions is None
        else {t: p.to_dict() for t, p in prediction.predictions.items()},
        "body_part": prediction.body_part,
        "model": prediction.model,
        "disagreement": row.disagreement,
        "tags": {k: row.tags.get(k) for k in SHOWN_TAGS},
        "thumbnail_url": thumbnail_url(row.id),
        "state": row.state,
        "verdict": row.verdict,
        "labels": row.labels,
        "settled_by": row.settled_by,
        "settled_at": row.settled_at,
        "queued_at": row.queued_at,
        "rule": row.rule,
    }


class ReviewQueue:
    """Read and settle the queue of one router (its config and journal)."""

    def __init__(self, cfg: RouterConfig, journal: Journal, vocabulary: Vocabulary | None = None):
        self.cfg = cfg
        self.journal = journal
        self.vocabulary = vocabulary if vocabulary is not None else model_vocabulary(cfg)

    def item(self, instance_id: int) -> ReviewRow:
        row = self.journal.review(instance_id)
        if row is None:
            raise ReviewNotFound(instance_id)
        return row

    def items(self, state: str | None = "pending", reason: str | None = None, limit: int = 100,
              offset: int = 0) -> list[ReviewRow]:
        return self.journal.review_items(state, reason, limit, offset)

    def choices(self, row: ReviewRow) -> dict[str, list[str]]:
        """Per task the reviewer answers (the prediction's, then the model's others): the labels."""
        tasks = {t: list(c) for t, c in self.vocabulary.tasks.items()}
        for task, p in (row.prediction.predictions or {}).items():
            known = tasks.setdefault(task, [])
            known += [c for c in p.probabilities if c not in known]
        predicted = list(row.prediction.predictions or {})
        return {t: tasks[t] for t in predicted + [t for t in tasks if t not in predicted]}

    def check_labels(self, row: ReviewRow, labels: dict[str, str]) -> None:
        allowed = self.choices(row)
        if not labels:
            raise LabelsNotAllowed("give at least one task's label", allowed)
        bad = {t: v for t, v in labels.items() if v not in allowed.get(t, ())}
        if bad:
            raise LabelsNotAllowed("labels the model does not have: "
                                   + ", ".join(f"{t}={v}" for t, v in bad.items()), allowed)

    def settle(self, instance_id: int, *, by: str, labels: dict[str, str] | None = None,
               accept: bool = False, not_medical: bool = False) -> ReviewRow:
        """Settle one entry (exactly one of ``labels``, ``accept``, ``not_medical``).

        Tasks ``labels`` does not name keep the model's label. With ``route_after_review`` the
        instance is decided again by the rules with the settled labels (score 1.0, not
        abstained) and delivered. Raises :class:`ReviewNotFound`, :class:`ReviewSettled` or
        :class:`LabelsNotAllowed`.
        """
        if sum((labels is not None, accept, not_medical)) != 1:
            raise ValueError("give exactly one of labels, accept, not_medical")
        row = self.item(instance_id)
        if row.state != "pending":
            raise ReviewSettled(row)
        settled: dict[str, str] | None = None
        verdict = "not_medical"
        if not not_medical:
            predicted = {t: p.label for t, p in (row.prediction.predictions or {}).items()}
            if labels is not None:
                self.check_labels(row, labels)
            settled = {**predicted, **(labels or {})}
            verdict = "accepted" if settled == predicted else "corrected"
        reroute = None
        if settled is not None and self.cfg.route_after_review:
            record = self.corrected_prediction(row, settled)
            decision = final_decision(self.cfg, row.tags, record)
            reroute = (record, decision.rule, list(decision.destinations))
        done, queued = self.journal.settle_review(instance_id, verdict, settled, by, reroute,
                                                  self.cfg.resend_duplicates)
        log_event("review_settled", instance_id=instance_id, sop_instance_uid=row.sop_instance_uid,
                  verdict=verdict, labels=settled, by=by, rule=reroute[1] if reroute else None,
                  queued=queued)
        return done

    def corrected_prediction(self, row: ReviewRow, labels: dict[str, str]) -> Prediction:
        """The record of a settled instance: each labelled task certain (1.0), none abstained."""
        choices = self.choices(row)
        tasks = {t: choices.get(t) or [v] for t, v in labels.items()}
        probabilities = {t: np.array([float(c == labels[t]) for c in classes])
                         for t, classes in tasks.items()}
        record = make_prediction(probabilities, tasks, {}, self.vocabulary.body_part_map,
                                 path=row.spool_path, sop_instance_uid=row.sop_instance_uid,
                                 series_instance_uid=row.series_instance_uid,
                                 model=row.prediction.model, model_version=row.prediction.model_version)
        for p in record.predictions.values():
            p.source = "review"
        return record

    def labels_csv(self) -> str:
        """Every settled instance but "not medical" ones as a training manifest: columns
        ``path,patient_id`` and one per task that has a label, in the model's task order (files
        no longer in the spool are left out). ``radroute train --data labels.csv`` reads it."""
        rows = [r for r in self.journal.labelled() if os.path.exists(r[0])]
        seen = {t for _, _, labels in rows for t in labels}
        tasks = [t for t in self.vocabulary.tasks if t in seen]
        tasks += sorted(seen - set(tasks))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["path", "patient_id", *tasks])
        for path, patient, labels in rows:
            writer.writerow([os.path.abspath(path), patient or "", *(labels.get(t, "") for t in tasks)])
        return out.getvalue()


__all__ = ["LabelsNotAllowed", "ReviewNotFound", "ReviewQueue", "ReviewSettled", "SHOWN_TAGS",
           "Vocabulary", "item_dict", "model_vocabulary", "thumbnail_url"]
