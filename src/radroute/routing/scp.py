"""The router's DICOM listener: a pynetdicom C-STORE + C-ECHO SCP.

Refusals, each logged with the calling AE title:

* calling AE title not in ``allowed_calling_aes`` -> A-ASSOCIATE-RJ (rejected-permanent,
  service-user, reason 3 "calling-AE-title-not-recognized");
* wrong called AE title -> A-ASSOCIATE-RJ reason 7; too many associations -> A-ASSOCIATE-RJ
  (rejected-transient, service-provider, reason 2 "local-limit-exceeded");
* a SOP class not in ``sop_classes`` -> C-STORE status 0x0122 "SOP class not supported"
  (contexts for every storage SOP class are accepted so the sender gets a DIMSE status);
* the spool or journal failing -> 0xA700 "out of resources" (the sender keeps its copy).
"""
from __future__ import annotations

from typing import Callable

from pydicom.dataset import Dataset
from pydicom.uid import UID

from radroute.errors import RadrouteError
from radroute.routing.config import ScpConfig
from radroute.routing.logs import log_event

#: transfer syntaxes accepted when the config names none: uncompressed, deflated, and the
#: lossless/lossy image codecs archives use. (Every context is deep-copied per association by
#: pynetdicom, so accepting all ~40 known syntaxes for ~170 SOP classes costs ~0.1 s each.)
DEFAULT_TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
]
STATUS_SOP_CLASS_NOT_SUPPORTED = 0x0122
STATUS_OUT_OF_RESOURCES = 0xA700
STATUS_CANNOT_UNDERSTAND = 0xC000

OnInstance = Callable[[bytes, Dataset, str], None]


class StoreSCP:
    """Receives instances and hands each, encoded as sent, to ``on_instance(data, dataset, calling_ae)``.

    ``on_instance`` must make the instance durable before returning: the success status is
    only sent afterwards.
    """

    def __init__(self, cfg: ScpConfig, on_instance: OnInstance):
        from pynetdicom import AE, AllStoragePresentationContexts, evt
        from pynetdicom.sop_class import Verification

        self.cfg = cfg
        self.on_instance = on_instance
        self.accepted = set(cfg.sop_classes)
        syntaxes = cfg.transfer_syntaxes or DEFAULT_TRANSFER_SYNTAXES
        ae = AE(ae_title=cfg.ae_title)
        ae.maximum_associations = cfg.max_associations
        ae.maximum_pdu_size = cfg.max_pdu
        ae.require_called_aet = True
        ae.require_calling_aet = list(cfg.allowed_calling_aes)
        ae.add_supported_context(Verification)
        for cx in AllStoragePresentationContexts:
            ae.add_supported_context(cx.abstract_syntax, syntaxes)
        self.ae = ae
        self.server = None
        self._handlers = [
            (evt.EVT_C_STORE, self._handle_store),
            (evt.EVT_C_ECHO, self._handle_echo),
            (evt.EVT_REJECTED, self._handle_rejected),
            (evt.EVT_ACCEPTED, self._handle_accepted),
        ]

    @property
    def port(self) -> int:
        return self.server.server_address[1] if self.server else self.cfg.port

    def start(self) -> None:
        self.server = self.ae.start_server((self.cfg.host, self.cfg.port), block=False,
                                           evt_handlers=self._handlers)
        log_event("scp_listening", ae_title=self.cfg.ae_title, host=self.cfg.host, port=self.port)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    # ---- handlers -----------------------------------------------------------------------------
    def _handle_store(self, event) -> int:
        calling = event.assoc.requestor.ae_title
        sop_class = str(event.request.AffectedSOPClassUID)
        if self.accepted and sop_class not in self.accepted:
            log_event("store_refused", level=30, calling_ae=calling, sop_class=sop_class,
                      sop_class_name=UID(sop_class).name, status="0x0122",
                      reason="sop_class_not_accepted",
                      sop_instance_uid=str(event.request.AffectedSOPInstanceUID))
            return STATUS_SOP_CLASS_NOT_SUPPORTED
        try:
            data = event.encoded_dataset()
            ds = event.dataset
            ds.file_meta = event.file_meta
        except Exception as exc:  # noqa: BLE001 - a malformed dataset is the sender's problem
            log_event("store_refused", level=30, calling_ae=calling, status="0xC000",
                      reason="cannot_decode", error=str(exc))
            return STATUS_CANNOT_UNDERSTAND
        try:
            self.on_instance(data, ds, calling)
        except RadrouteError as exc:  # e.g. an empty SOPInstanceUID: nothing to route it by
            log_event("store_refused", level=30, calling_ae=calling, status="0xC000",
                      reason=exc.code, error=exc.message)
            return STATUS_CANNOT_UNDERSTAND
        except Exception as exc:  # noqa: BLE001 - not durable: the sender must keep its copy
            log_event("store_failed", level=40, calling_ae=calling, status="0xA700",
                      error=f"{type(exc).__name__}: {exc}",
                      sop_instance_uid=str(event.request.AffectedSOPInstanceUID))
            return STATUS_OUT_OF_RESOURCES
        return 0x0000

    def _handle_echo(self, event) -> int:
        log_event("echo", calling_ae=event.assoc.requestor.ae_title)
        return 0x0000

    def _handle_rejected(self, event) -> None:
        assoc = event.assoc
        calling = assoc.requestor.ae_title
        primitive = assoc.requestor.primitive
        called = primitive.called_ae_title if primitive is not None else None
        if self.ae.require_calling_aet and calling not in [a.strip() for a in self.ae.require_calling_aet]:
            reason = "calling_ae_not_allowed"
        elif called is not None and called.strip() != self.cfg.ae_title:
            reason = "called_ae_not_recognised"
        else:
            reason = "max_associations_reached"
        log_event("association_rejected", level=30, calling_ae=calling, called_ae=called,
                  address=assoc.requestor.address, reason=reason)

    def _handle_accepted(self, event) -> None:
        log_event("association_accepted", level=10, calling_ae=event.assoc.requestor.ae_title,
                  address=event.assoc.requestor.address)
