"""Results as instances the router makes: one DICOM SR per classified instance (or series).

After a decision, :func:`make_result` builds the SR (``radroute.inference.sr``) from the
prediction and the spooled instances' headers and spools it; the service then journals it,
already decided (rule ``results``), in the same transaction as the decision it reports, so the
SR is delivered, retried and deduplicated like any received instance. Its UID is derived from
the source and the model: deciding the same instance again after a crash makes the same SR.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from radroute.errors import error_dict
from radroute.inference.record import Prediction
from radroute.routing.ingest import read_instance_header
from radroute.routing.logs import hash_patient, log_event
from radroute.routing.rules import tags_from_dataset
from radroute.routing.spool import Spool

#: the journal's rule name of the SRs the router makes
RESULTS_RULE = "results"


@dataclass
class MadeInstance:
    """An instance the router made (an SR), spooled, to be journaled with its destinations."""

    spool_path: str
    tags: dict[str, str]
    patient_hash: str | None
    destinations: tuple[str, ...]
    rule: str = RESULTS_RULE
    source: str = "results"


def make_result(prediction: Prediction, spool_paths: list[str], destinations: tuple[str, ...],
                spool: Spool, tag_keywords: set[str], salt: str) -> MadeInstance | None:
    """Build and spool the SR of ``prediction`` about the instances at ``spool_paths``.

    Returns ``None`` (and logs ``results_failed``) when no SR can be made: a failed SR never
    holds up the routing of the images it reports on.
    """
    from radroute.inference.sr import build_sr

    try:
        sources = [read_instance_header(p) for p in spool_paths]
        sr = build_sr(prediction, sources)
        buf = io.BytesIO()
        sr.save_as(buf, enforce_file_format=True)
        path = spool.store_bytes(buf.getvalue())
    except Exception as exc:  # noqa: BLE001 - logged; the images are routed all the same
        log_event("results_failed", level=30, sop_instance_uid=prediction.sop_instance_uid,
                  series_instance_uid=prediction.series_instance_uid, error=error_dict(exc))
        return None
    patient = hash_patient(sr.get("PatientID") or sr.get("PatientName"), salt)
    return MadeInstance(str(path), tags_from_dataset(sr, tag_keywords), patient, destinations)


__all__ = ["RESULTS_RULE", "MadeInstance", "make_result"]
