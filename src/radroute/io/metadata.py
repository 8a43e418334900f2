"""DICOM Dataset -> :class:`~radroute.io.types.Metadata`."""
from __future__ import annotations

from typing import Any

from pydicom.dataset import Dataset

from radroute.io.types import Metadata
from radroute.vocab import normalise_body_part


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if not isinstance(value, (str, bytes)) and hasattr(value, "__iter__"):
        value = "\\".join(str(v) for v in value)  # multi-valued (e.g. PatientOrientation)
    text = str(value).strip()
    return text or None


def _int(ds: Dataset, keyword: str) -> int | None:
    try:
        value = ds.get(keyword)
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    """Row/column spacing in mm: PixelSpacing, ImagerPixelSpacing, or the functional groups."""
    candidates: list[Any] = [ds.get("PixelSpacing"), ds.get("ImagerPixelSpacing")]
    for group in ("SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence"):
        try:
            candidates.append(ds[group][0].PixelMeasuresSequence[0].PixelSpacing)
        except (KeyError, IndexError, AttributeError, TypeError):
            pass
    for value in candidates:
        try:
            if value is not None and len(value) == 2:
                return float(value[0]), float(value[1])
        except (TypeError, ValueError):
            continue
    return None


def transfer_syntax(ds: Dataset) -> str | None:
    """The Transfer Syntax UID from the file meta, ``None`` when the file has none."""
    meta = getattr(ds, "file_meta", None)
    uid = meta.get("TransferSyntaxUID") if meta is not None else None
    return str(uid) if uid else None


def metadata_from_dataset(ds: Dataset, path: str | None = None, *, ts_uid: str | None = None) -> Metadata:
    """Extract the tags radroute uses; absent tags are ``None``; ``body_part`` is normalised."""
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    frames = _int(ds, "NumberOfFrames")
    if frames is None and rows is not None:
        frames = 1
    body_part_examined = _text(ds, "BodyPartExamined")
    study, series = _text(ds, "StudyDescription"), _text(ds, "SeriesDescription")
    protocol = _text(ds, "ProtocolName")
    sop_class = _text(ds, "SOPClassUID") or _text(getattr(ds, "file_meta", Dataset()), "MediaStorageSOPClassUID")
    return Metadata(
        path=path,
        sop_class_uid=sop_class,
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        modality=_text(ds, "Modality"),
        body_part_examined=body_part_examined,
        view_position=_text(ds, "ViewPosition"),
        patient_orientation=_text(ds, "PatientOrientation"),
        image_laterality=_text(ds, "ImageLaterality") or _text(ds, "Laterality"),
        study_description=study,
        series_description=series,
        protocol_name=protocol,
        patient_age=_text(ds, "PatientAge"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        study_date=_text(ds, "StudyDate"),
        pixel_spacing=pixel_spacing(ds),
        photometric=_text(ds, "PhotometricInterpretation"),
        transfer_syntax=ts_uid if ts_uid is not None else transfer_syntax(ds),
        rows=rows,
        columns=columns,
        frames=frames,
        bits_stored=_int(ds, "BitsStored"),
        body_part=normalise_body_part(body_part_examined, study, series, protocol),
        format="dicom",
    )
