"""Destinations: a folder, a DICOM AE (C-STORE SCU) or a DICOMweb server (STOW-RS).

Each destination sends a batch of journal rows and reports, per row, success or an error.
:class:`Unavailable` means the destination itself cannot be reached (connection refused,
association rejected/aborted, HTTP 5xx): the worker then stops counting per-instance attempts,
backs off and probes with :meth:`Destination.check` (C-ECHO / HTTP GET) until it is back.
Instances are forwarded byte for byte from the spool (pixel data untouched) unless the
destination asks for corrected tags, in which case a corrected copy is encoded in memory.
"""
from __future__ import annotations

import io
import re
import threading
import time
from pathlib import Path
from typing import Union

import pydicom
from pydicom.dataset import Dataset

from radroute.inference.record import Prediction
from radroute.routing.config import DestinationConfig, TagCorrectionConfig
from radroute.routing.journal import DeliveryRow
from radroute.routing.spool import copy_durable, write_durable
from radroute.routing.tagfix import correct_tags

#: C-STORE statuses that mean "stored" (success and the storage warnings)
STORE_OK = {0x0000, 0x0001, 0xB000, 0xB006, 0xB007}

Payload = Union[Path, Dataset]


class Unavailable(Exception):
    """The destination cannot be reached; rows not yet sent are released, not failed."""


class Destination:
    """Base class: ``send(rows) -> [(row, error or None)]`` for the rows it got to."""

    def __init__(self, cfg: DestinationConfig, tag_correction: TagCorrectionConfig | None = None):
        self.cfg = cfg
        self.name = cfg.name
        self.tag_correction = tag_correction

    def payload(self, row: DeliveryRow) -> Payload:
        """The spool file itself, or a corrected copy (never the original modified)."""
        path = Path(row.spool_path)
        if not (self.cfg.correct_tags and self.tag_correction and row.prediction):
            return path
        ds = pydicom.dcmread(path)
        return correct_tags(ds, row.prediction, self.tag_correction)

    def send(self, rows: list[DeliveryRow]) -> list[tuple[DeliveryRow, str | None]]:
        raise NotImplementedError

    def check(self) -> bool:
        """Health probe: ``True`` when the destination answers."""
        raise NotImplementedError

    def holds(self, rows: list[DeliveryRow]) -> dict[str, bool | None]:
        """Whether the destination already has each instance (``None``: cannot tell).

        Asked after a crash for deliveries that were in flight; raises :class:`Unavailable`
        when the destination cannot be reached."""
        return {r.sop_instance_uid: None for r in rows}

    def close(self) -> None:
        pass

    def describe(self) -> str:
        return self.cfg.type


def _encode(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


# ---- folder ---------------------------------------------------------------------------------
_UNSAFE = re.compile(r"[^A-Za-z0-9._ -]+")


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return "unknown"


def template_fields(tags: dict[str, str], prediction: Prediction | None, rule: str | None,
                    destination: str) -> dict[str, str]:
    """Values a folder path template can use: tag keywords, ``label_<task>``, ``score_<task>``,
    ``body_part``, ``rule``, ``destination``; missing ones render as ``unknown``."""
    fields = _Fields(tags)
    for task, p in ((prediction.predictions or {}) if prediction is not None else {}).items():
        fields[f"label_{task}"] = "abstained" if p.abstained else str(p.label)
        fields[f"score_{task}"] = f"{p.score:.2f}"
    fields["body_part"] = (prediction.body_part if prediction is not None else None) or "unknown"
    fields["rule"] = rule or "unknown"
    fields["destination"] = destination
    safe = _Fields()
    for k, v in fields.items():
        v = _UNSAFE.sub("_", str(v)).strip(" .") or "unknown"
        safe[k] = v[:64]
    return safe


def folder_target(cfg: DestinationConfig, tags: dict[str, str], prediction: Prediction | None,
                  rule: str | None) -> Path:
    """The file a folder destination writes: ``<folder>/<SOPInstanceUID>.dcm`` or its template."""
    fields = template_fields(tags, prediction, rule, cfg.name)
    if "{" not in cfg.path:
        return Path(cfg.path) / f"{fields['SOPInstanceUID']}.dcm"
    return Path(cfg.path.format_map(fields))


def describe_target(cfg: DestinationConfig, tags: dict[str, str], prediction: Prediction | None,
                    rule: str | None) -> str:
    """Where a destination would put an instance (``route --dry-run``)."""
    if cfg.type == "folder":
        return str(folder_target(cfg, tags, prediction, rule))
    if cfg.type == "dicom":
        return f"dicom {cfg.ae_title}@{cfg.host}:{cfg.port}"
    return f"stow {cfg.url}"


class FolderDestination(Destination):
    def root(self) -> Path:
        """The fixed part of the path: the folder the health check probes."""
        if "{" not in self.cfg.path:
            return Path(self.cfg.path)
        prefix = self.cfg.path.split("{", 1)[0]
        return Path(prefix) if prefix.endswith("/") else Path(prefix).parent

    def target(self, row: DeliveryRow) -> Path:
        return folder_target(self.cfg, row.tags, row.prediction, row.rule)

    def send(self, rows):
        out = []
        for row in rows:
            try:
                dst = self.target(row)
                dst.parent.mkdir(parents=True, exist_ok=True)
                payload = self.payload(row)
                if isinstance(payload, Path):
                    copy_durable(payload, dst)
                else:
                    write_durable(dst, _encode(payload))
                out.append((row, None))
            except FileNotFoundError as exc:
                out.append((row, f"spool file missing: {exc}"))
            except OSError as exc:
                if not self.check():
                    raise Unavailable(f"folder not writable: {exc}") from exc
                out.append((row, f"{type(exc).__name__}: {exc}"))
        return out

    def holds(self, rows):
        return {r.sop_instance_uid: self.target(r).is_file() for r in rows}

    def check(self) -> bool:
        root = self.root()
        try:
            root.mkdir(parents=True, exist_ok=True)
            probe = root / ".radroute-probe"
            probe.write_bytes(b"")
            probe.unlink()
            return True
        except OSError:
            return False

    def describe(self) -> str:
        return f"folder {self.cfg.path}"


# ---- DICOM C-STORE SCU -------------------------------------------------------------------------
class DicomDestination(Destination):
    """C-STORE to a remote AE over one kept-open association (re-negotiated for new contexts)."""

    IDLE_CLOSE_SECONDS = 10.0

    def __init__(self, cfg, tag_correction=None):
        super().__init__(cfg, tag_correction)
        from pynetdicom import AE

        self.ae = AE(ae_title=cfg.calling_ae_title)
        for attr in ("acse_timeout", "dimse_timeout", "network_timeout", "connection_timeout"):
            setattr(self.ae, attr, cfg.timeout_seconds)
        self.assoc = None
        self._pairs: set[tuple[str, str]] = set()
        self._last_used = 0.0
        self._lock = threading.Lock()

    def _accepted(self) -> set[tuple[str, str]]:
        return {(cx.abstract_syntax, cx.transfer_syntax[0]) for cx in self.assoc.accepted_contexts}

    def _associate(self, pairs: set[tuple[str, str]]) -> None:
        from pynetdicom.presentation import build_context

        self.close()
        wanted = list(pairs | self._pairs) if len(pairs | self._pairs) <= 128 else list(pairs)[:128]
        contexts = [build_context(sop, [ts]) for sop, ts in wanted]
        assoc = self.ae.associate(self.cfg.host, self.cfg.port, contexts=contexts,
                                  ae_title=self.cfg.ae_title)
        if not assoc.is_established:
            why = "rejected" if assoc.is_rejected else "aborted" if assoc.is_aborted else "failed"
            raise Unavailable(f"association with {self.cfg.ae_title}@{self.cfg.host}:{self.cfg.port} {why}")
        self.assoc, self._pairs = assoc, set(wanted)

    def send(self, rows):
        with self._lock:
            pairs = {(r.sop_class_uid, r.transfer_syntax) for r in rows}
            if self.assoc is None or not self.assoc.is_established or not pairs <= self._pairs:
                self._associate(pairs)
            accepted = self._accepted()
            out = []
            for row in rows:
                if (row.sop_class_uid, row.transfer_syntax) not in accepted:
                    out.append((row, f"{self.cfg.ae_title} accepts no presentation context for "
                                     f"{row.sop_class_uid} in {row.transfer_syntax}"))
                    continue
                try:
                    payload = self.payload(row)
                except (OSError, ValueError) as exc:
                    out.append((row, f"cannot read spool file: {exc}"))
                    continue
                status = self.assoc.send_c_store(payload)
                if "Status" not in status:  # timed out / aborted: the rest are released
                    self.close()
                    if out:
                        return out
                    raise Unavailable(f"no C-STORE response from {self.cfg.ae_title}")
                code = int(status.Status)
                out.append((row, None if code in STORE_OK else f"C-STORE status 0x{code:04X}"))
            self._last_used = time.monotonic()
            return out

    def idle(self) -> None:
        """Release a kept-open association nobody used for a while."""
        with self._lock:
            if self.assoc is not None and time.monotonic() - self._last_used > self.IDLE_CLOSE_SECONDS:
                self.close()

    def holds(self, rows):
        """C-FIND (Study Root, IMAGE level) per instance; the peer must allow our C-FIND."""
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

        ae = type(self.ae)(ae_title=self.cfg.calling_ae_title)
        ae.add_requested_context(FIND)
        ae.acse_timeout = ae.network_timeout = ae.connection_timeout = self.cfg.timeout_seconds
        assoc = ae.associate(self.cfg.host, self.cfg.port, ae_title=self.cfg.ae_title)
        if not assoc.is_established:
            raise Unavailable(f"no association with {self.cfg.ae_title} to check deliveries")
        out: dict[str, bool | None] = {}
        try:
            for row in rows:
                query = Dataset()
                query.QueryRetrieveLevel = "IMAGE"
                query.StudyInstanceUID = row.tags.get("StudyInstanceUID", "")
                query.SeriesInstanceUID = row.tags.get("SeriesInstanceUID", "")
                query.SOPInstanceUID = row.sop_instance_uid
                found: bool | None = False
                for status, _ in assoc.send_c_find(query, FIND):
                    code = int(status.Status) if status and "Status" in status else -1
                    if code in (0xFF00, 0xFF01):
                        found = True
                    elif code != 0x0000:
                        found = None if found is False else found
                out[row.sop_instance_uid] = found
        finally:
            if assoc.is_established:
                assoc.release()
        return out

    def check(self) -> bool:
        from pynetdicom.sop_class import Verification

        ae = type(self.ae)(ae_title=self.cfg.calling_ae_title)
        ae.add_requested_context(Verification)
        ae.acse_timeout = ae.network_timeout = ae.connection_timeout = min(10.0, self.cfg.timeout_seconds)
        assoc = ae.associate(self.cfg.host, self.cfg.port, ae_title=self.cfg.ae_title)
        if not assoc.is_established:
            return False
        status = assoc.send_c_echo()
        assoc.release()
        return bool(status) and int(status.Status) == 0

    def close(self) -> None:
        if self.assoc is not None:
            try:
                if self.assoc.is_established:
                    self.assoc.release()
            finally:
                self.assoc = None

    def describe(self) -> str:
        return describe_target(self.cfg, {}, None, None)


# ---- DICOMweb STOW-RS ------------------------------------------------------------------------
class StowDestination(Destination):
    def __init__(self, cfg, tag_correction=None):
        super().__init__(cfg, tag_correction)
        from dicomweb_client.api import DICOMwebClient
        from dicomweb_client.session_utils import create_session

        session = create_session()
        if cfg.username is not None:
            session.auth = (cfg.username, cfg.password)
        if cfg.token:
            session.headers["Authorization"] = f"Bearer {cfg.token}"
        session.verify = cfg.verify_tls
        if cfg.client_cert:
            session.cert = (cfg.client_cert, cfg.client_key) if cfg.client_key else cfg.client_cert
        self.session = session
        self.client = DICOMwebClient(url=cfg.url, session=session)

    def send(self, rows):
        import requests

        datasets, out, sendable = [], [], []
        for row in rows:
            try:
                payload = self.payload(row)
                datasets.append(pydicom.dcmread(payload) if isinstance(payload, Path) else payload)
                sendable.append(row)
            except (OSError, ValueError) as exc:
                out.append((row, f"cannot read spool file: {exc}"))
        if not sendable:
            return out
        try:
            response = self.client.store_instances(datasets)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise Unavailable(f"STOW-RS {self.cfg.url}: {type(exc).__name__}") from exc
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code >= 500 or code in (401, 403, 404, 429):
                raise Unavailable(f"STOW-RS {self.cfg.url}: HTTP {code}") from exc
            return out + [(row, f"STOW-RS HTTP {code}") for row in sendable]
        failed = {}
        for item in (response.get("FailedSOPSequence") or []) if response is not None else []:
            uid = str(item.get("ReferencedSOPInstanceUID", ""))
            failed[uid] = f"STOW-RS failure reason {item.get('FailureReason', 'unknown')}"
        return out + [(row, failed.get(row.sop_instance_uid)) for row in sendable]

    def holds(self, rows):
        """QIDO-RS search for each SOPInstanceUID."""
        import requests

        out: dict[str, bool | None] = {}
        for row in rows:
            try:
                found = self.client.search_for_instances(
                    search_filters={"SOPInstanceUID": row.sop_instance_uid})
                out[row.sop_instance_uid] = bool(found)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise Unavailable(f"QIDO-RS {self.cfg.url}: {type(exc).__name__}") from exc
            except requests.HTTPError:
                out[row.sop_instance_uid] = None
        return out

    def check(self) -> bool:
        import requests

        url = self.cfg.health_url or self.cfg.url.rstrip("/") + "/studies?limit=1"
        try:
            return self.session.get(url, timeout=min(10.0, self.cfg.timeout_seconds)).status_code < 400
        except requests.RequestException:
            return False

    def describe(self) -> str:
        return describe_target(self.cfg, {}, None, None)


def make_destination(cfg: DestinationConfig, tag_correction: TagCorrectionConfig | None) -> Destination:
    kinds = {"folder": FolderDestination, "dicom": DicomDestination, "stow": StowDestination}
    return kinds[cfg.type](cfg, tag_correction)
