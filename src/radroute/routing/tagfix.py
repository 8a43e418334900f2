"""Optional tag correction on forwarded copies (the spooled original is never altered).

A corrected copy can carry the predicted BodyPartExamined (a DICOM defined term through
:data:`radroute.vocab.DICOM_TERM_FOR`), a ViewPosition from a view task, and a private block
``RADROUTE 1.0`` in group 0x0011 with the model name, version, label(s) and score.
"""
from __future__ import annotations

from pydicom.dataset import Dataset

from radroute.inference.record import Prediction
from radroute.routing.config import TagCorrectionConfig
from radroute.routing.rules import tag_body_part
from radroute.vocab import DICOM_TERM_FOR

PRIVATE_GROUP = 0x0011
PRIVATE_CREATOR = "RADROUTE 1.0"


def disagreement(tags: dict[str, str], prediction: Prediction | None) -> dict | None:
    """``{"tag": ..., "predicted": ...}`` when the tags' body part and a confident prediction differ."""
    if prediction is None or prediction.is_abstained():
        return None
    predicted = prediction.body_part
    claimed = tag_body_part(tags)
    if not predicted or predicted == "unknown" or claimed == "unknown" or predicted == claimed:
        return None
    return {"field": "body_part", "tag": claimed, "tag_value": tags.get("BodyPartExamined"),
            "predicted": predicted}


def correct_tags(ds: Dataset, prediction: Prediction | None, cfg: TagCorrectionConfig) -> Dataset:
    """Apply the corrections to ``ds`` in place (a copy read from the spool) and return it."""
    if prediction is None or not prediction.predictions:
        return ds
    preds = prediction.predictions
    if cfg.body_part and not prediction.is_abstained():
        term = DICOM_TERM_FOR.get(prediction.body_part or "unknown")
        if term:
            ds.BodyPartExamined = term
    view = preds.get(cfg.view_task)
    if cfg.view_position and view is not None and not view.abstained:
        term = cfg.view_position_map.get(view.label)
        if term:
            ds.ViewPosition = term
    if cfg.private_block:
        block = ds.private_block(PRIVATE_GROUP, PRIVATE_CREATOR, create=True)
        block.add_new(0x01, "LO", str(prediction.model or "")[:64])
        block.add_new(0x02, "LO", str(prediction.model_version or "")[:64])
        labels = [f"{task}={p.label}" for task, p in preds.items()]
        block.add_new(0x03, "LO", "\\".join(labels)[:64])
        scores = [f"{p.score:.4f}" for p in preds.values()]
        block.add_new(0x04, "DS", "\\".join(scores))
        block.add_new(0x05, "CS", "Y" if prediction.abstained else "N")
    return ds
