"""``radroute route --dry-run``: where each file would go, decided as the running router decides.

The steps are those of :mod:`radroute.routing.decide`, called in the order the service calls
them (series mode: the first instance's tags decide, an evenly spaced sample is classified and
aggregated, every instance gets that decision); nothing is spooled or sent.
"""
from __future__ import annotations

from pathlib import Path

from radroute.errors import error_dict
from radroute.inference.record import Prediction
from radroute.routing.classify import Classifier, aggregate, classify_instances, load_classifier
from radroute.routing.config import RouterConfig
from radroute.routing.decide import final_decision, first_decision, sample_evenly, series_key, targets
from radroute.routing.ingest import read_instance_header
from radroute.routing.rules import Decision, tags_from_dataset
from radroute.routing.service import check_model_against_rules, summary
from radroute.routing.tagfix import disagreement


class _File:
    """One input file on its way through the dry run."""

    def __init__(self, path: Path):
        self.path = str(path)
        self.tags: dict[str, str] = {}
        self.error: dict | None = None
        self.decision: Decision | None = None
        self.classify = False
        self.prediction: Prediction | None = None

    def row(self, cfg: RouterConfig) -> dict:
        d = self.decision
        return {"path": self.path, "sop_instance_uid": self.tags.get("SOPInstanceUID"),
                "series_instance_uid": self.tags.get("SeriesInstanceUID"),
                "rule": d.rule if d else None, "reason": d.reason if d else None,
                "destinations": list(d.destinations) if d else None,
                "targets": targets(cfg, d, self.tags, self.prediction) if d else None,
                "prediction": summary(self.prediction),
                "disagreement": disagreement(self.tags, self.prediction) if d else None,
                "error": self.error}


def plan(cfg: RouterConfig, paths: list[Path], classifier: Classifier | None = None,
         batch_size: int = 16) -> list[dict]:
    """One row per file: its rule, destinations, targets, prediction summary, tag disagreement
    and error (every field present, ``null`` when unknown)."""
    if cfg.needs_prediction and classifier is None:
        classifier = load_classifier(cfg.classifier.model, cfg.classifier.backend, cfg.classifier.threads,
                                     cfg.classifier.threshold)
    if classifier is not None:
        check_model_against_rules(cfg, classifier)
    files = [_File(p) for p in paths]
    for f in files:
        try:
            f.tags = tags_from_dataset(read_instance_header(f.path), cfg.tag_keywords)
        except Exception as exc:  # noqa: BLE001 - reported per file
            f.error = error_dict(exc)
    ok = [f for f in files if f.error is None]
    groups = _groups(cfg, ok)
    wanted: list[_File] = []
    for members in groups:
        decision, classify = first_decision(cfg, members[0].tags, classifier is not None)
        for f in members:
            f.decision, f.classify = decision, classify
        if classify:
            wanted += members if cfg.decision == "instance" else sample_evenly(
                members, cfg.series_max_classified, lambda f: f.tags)
    records = {}
    for start in range(0, len(wanted), batch_size):
        chunk = wanted[start:start + batch_size]
        for f, rec in zip(chunk, classify_instances(classifier, [f.path for f in chunk])):
            records[id(f)] = rec
    for members in groups:
        if not members[0].classify:
            prediction = None
        elif cfg.decision == "instance":
            prediction = records[id(members[0])]
        else:
            prediction = aggregate([records[id(f)] for f in members if id(f) in records], classifier)
        decision = members[0].decision if not members[0].classify else final_decision(
            cfg, members[0].tags, prediction)
        if decision is None:
            decision = final_decision(cfg, members[0].tags, None)
        for f in members:
            f.decision, f.prediction = decision, prediction
    return [f.row(cfg) for f in files]


def _groups(cfg: RouterConfig, files: list[_File]) -> list[list[_File]]:
    """Instance mode: each file alone; series mode: the files of each series, in file order."""
    if cfg.decision == "instance":
        return [[f] for f in files]
    groups: dict[str, list[_File]] = {}
    for f in files:
        key = series_key(f.tags.get("SOPInstanceUID", f.path), f.tags.get("SeriesInstanceUID"))
        groups.setdefault(key, []).append(f)
    return list(groups.values())
