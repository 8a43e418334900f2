"""Structured JSON logs for the router; patient identifiers only ever appear hashed.

Every record is one JSON object per line: ``{"ts", "level", "logger", "event", ...fields}``.
Fields passed as ``patient_name``/``patient_id`` are replaced by a salted SHA-256 prefix; the
salt (``router.patient_hash_salt``) is always passed explicitly, never kept in a global.
"""
from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from typing import Any

LOGGER = logging.getLogger("radroute.routing")
_PATIENT_FIELDS = ("patient_name", "patient_id", "PatientName", "PatientID")


def hash_patient(value: Any, salt: str) -> str | None:
    """A stable pseudonym for a patient identifier: ``sha256:<16 hex>`` (``None`` for empty)."""
    text = "" if value is None else str(value).strip()
    if not text:
        return None
    digest = hashlib.sha256((salt + "\0" + text).encode()).hexdigest()
    return f"sha256:{digest[:16]}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record; extra fields come from ``record.fields``; patient fields are
    hashed with ``salt``."""

    def __init__(self, salt: str = ""):
        super().__init__()
        self.salt = salt

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                  + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        for key, value in getattr(record, "fields", {}).items():
            out[key] = hash_patient(value, self.salt) if key in _PATIENT_FIELDS else value
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out, default=str)


def log_event(event: str, level: int = logging.INFO, logger: logging.Logger = LOGGER,
              **fields: Any) -> None:
    """Log ``event`` with structured ``fields`` (``None`` values are kept as ``null``)."""
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


def setup_logging(path: str | None = None, level: int = logging.INFO, salt: str = "") -> None:
    """Send radroute and pynetdicom logs as JSON lines to ``path`` (default stderr)."""
    handler: logging.Handler = (logging.FileHandler(path) if path
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(JsonFormatter(salt))
    for name, lvl in (("radroute", level), ("pynetdicom", logging.WARNING)):
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            if getattr(h, "_radroute", False):
                lg.removeHandler(h)
        handler._radroute = True  # type: ignore[attr-defined]
        lg.addHandler(handler)
        lg.setLevel(lvl)
        lg.propagate = False
