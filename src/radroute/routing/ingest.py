"""Reading an instance to route it: its header (the tags the rules read) and, for a file that lacks
complete file meta, the bytes of a proper DICOM file to spool."""
from __future__ import annotations

import io
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from radroute.errors import NotDicomError, UnreadableError


def read_instance_header(path: str | Path | io.BytesIO) -> Dataset:
    """The header of a routable instance (stops before Pixel Data).

    Unlike :func:`radroute.io.read_header` (tags normalised for classification) this returns the
    pydicom dataset the router spools and forwards; it must name its SOP class and instance.
    Raises :class:`NotDicomError` / :class:`UnreadableError`.
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except FileNotFoundError as exc:
        raise UnreadableError("file not found", path, code="not_found") from exc
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise UnreadableError(f"cannot read DICOM header: {exc}", path) from exc
    if not ds.get("SOPInstanceUID") or not ds.get("SOPClassUID"):
        raise NotDicomError("no (or empty) SOPClassUID/SOPInstanceUID: not a routable instance", path)
    return ds


def has_complete_meta(ds: Dataset) -> bool:
    """A DICOM file with preamble and the file meta a destination needs: spooled as it is."""
    meta = getattr(ds, "file_meta", None)
    return (ds.preamble is not None and meta is not None and all(k in meta for k in (
        "TransferSyntaxUID", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID")))


def file_bytes_with_meta(path: Path) -> bytes:
    """A file without (complete) file meta, rewritten in the DICOM file format."""
    ds = pydicom.dcmread(path, force=True)
    meta = ds.file_meta if isinstance(getattr(ds, "file_meta", None), FileMetaDataset) else FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian if ds.is_implicit_VR else ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.setdefault("ImplementationClassUID", PYDICOM_IMPLEMENTATION_UID)
    ds.file_meta = meta
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()
