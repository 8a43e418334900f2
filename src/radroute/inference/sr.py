"""Prediction records as DICOM Comprehensive SR (TID 1500 Measurement Report), and back.

:func:`build_sr` turns the records of one source instance (one per frame), or one series
aggregate, into a highdicom :class:`~highdicom.sr.ComprehensiveSR` of the same Patient and
Study in its own Series; :func:`read_sr_results` gives the records back from such an SR.
One TID 1501 group per record (the whole tree is in docs/classify.md, "Results as DICOM SR")::

    CONTAINER (125007, DCM, "Measurement Group")
      HAS OBS CONTEXT TEXT (112039, DCM, "Tracking Identifier"), UIDREF (112040, DCM, ...)
      HAS CONCEPT MOD TEXT (111001, DCM, "Algorithm Name"), (111003, "Algorithm Version")  TID 4019
      CONTAINS CODE <task> = <label>                                  one per task
        HAS CONCEPT MOD TEXT Algorithm Name / Version                 a cascade: who answered it
        HAS PROPERTIES NUM (122157, DCM, "Probability") = score, unit (1, UCUM, "no units")
        HAS PROPERTIES CODE (abstained, 99RADROUTE) = (373066001, SCT, "Yes") | (373067005, "No")
        HAS PROPERTIES CODE (source, 99RADROUTE) = (tag | tags, 99RADROUTE)   not from the image alone
        HAS PROPERTIES CODE (class, 99RADROUTE) = <class>          one per class, model order
          HAS PROPERTIES NUM (122157, DCM, "Probability") = that class's probability
      CONTAINS IMAGE (121112, DCM, "Source of Measurement") -> the image (and frame)
      CONTAINS CODE (123014, DCM, "Target Region") = <body part>      when the record has one
      CONTAINS NUM (instances, 99RADROUTE, "Instances averaged") = n  series aggregates only

``<task>`` is (111031, DCM, "Image View") for the task ``view``, else (task, 99RADROUTE, task);
``<label>`` is SNOMED CT for the body-part vocabulary (CID 4031) and the views frontal and
lateral (CID 4010), else (label, 99RADROUTE, label), a code of radroute's private coding scheme
declared in the SR's Coding Scheme Identification Sequence. Both mappings are one to one, so
reading back gives the same records, ``path`` aside (``None``); ``models`` is rebuilt from who
answered each task (the group's algorithm, or the task's own in a cascade), so a cascade stage
whose tasks an earlier stage had all answered is not listed.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import highdicom as hd
import pydicom
from pydicom import config as pydicom_config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import UID, generate_uid
from pydicom.valuerep import validate_value

from radroute.errors import RadrouteError
from radroute.inference.record import Prediction, TaskPrediction

#: radroute's private coding scheme (PS3.16 8.2: a "99" prefix is a private scheme)
CODING_SCHEME = "99RADROUTE"
#: Series Number of the results series
SERIES_NUMBER = 9901
SERIES_DESCRIPTION = "radroute results"

#: the body-part vocabulary as SNOMED CT (DICOM CID 4031), pydicom's ``codes.SCT`` names
BODY_PART_CODES: dict[str, Code] = {
    "head": codes.SCT.Head, "neck": codes.SCT.Neck, "chest": codes.SCT.Chest,
    "abdomen": codes.SCT.Abdomen, "pelvis": codes.SCT.Pelvis, "spine": codes.SCT.Spine,
    "upper_limb": codes.SCT.UpperLimb, "lower_limb": codes.SCT.LowerLimb,
    "breast": codes.SCT.Breast, "whole_body": codes.SCT.EntireBody,
}
#: views (DICOM CID 4010)
VIEW_CODES: dict[str, Code] = {"frontal": codes.SCT.Frontal, "lateral": codes.SCT.LateralProjection}
_STANDARD_LABELS = {**BODY_PART_CODES, **VIEW_CODES}
_LABEL_OF = {(c.scheme_designator, c.value): term for term, c in _STANDARD_LABELS.items()}
#: the task whose concept name is DICOM's Image View
VIEW_TASK = "view"

ABSTAINED = Code("abstained", CODING_SCHEME, "Abstained")
SOURCE = Code("source", CODING_SCHEME, "Source of the answer")
DEFAULT_SOURCE = "image"
CLASS = Code("class", CODING_SCHEME, "Class")
INSTANCES = Code("instances", CODING_SCHEME, "Instances averaged")
UNIT_ONE = codes.UCUM.NoUnits
YES, NO = codes.SCT.Yes, codes.SCT.No


class CannotReportError(RadrouteError):
    """No SR can be written for this source (nothing classified, invalid or missing UIDs)."""

    code = "cannot_report"


# ---- codes ---------------------------------------------------------------------------------------
def label_code(label: str) -> Code:
    """A label (or body-part term) as a code: SNOMED CT where DICOM has one, else radroute's."""
    return _STANDARD_LABELS.get(label) or Code(label, CODING_SCHEME, label[:64])


def task_code(task: str) -> Code:
    """A task as a concept name: DICOM's Image View for ``view``, else radroute's."""
    return codes.DCM.ImageView if task == VIEW_TASK else Code(task, CODING_SCHEME, task[:64])


# ---- the source header ---------------------------------------------------------------------------
_SOURCE_UIDS = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID")
#: type 2 attributes of the Patient and General Study modules: empty when the source lacks them
_TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
          "ReferringPhysicianName", "StudyID", "AccessionNumber")


def _valid(elem: DataElement) -> bool:
    if elem.VR == "SQ":
        return all(_valid(e) for item in elem.value for e in item)
    try:
        validate_value(elem.VR, elem.value, pydicom_config.RAISE)
    except (ValueError, TypeError):
        return False
    return True


def clean_source(ds: Dataset) -> Dataset:
    """The source header as the SR may inherit it: public attributes whose values are valid for
    their VR (an invalid Patient's Age of the source is left out rather than copied into the
    SR), the type 2 Patient and Study attributes present. Raises :class:`CannotReportError` when a
    UID that the SR references (SOP class and instance, series, study) is missing or invalid."""
    for keyword in _SOURCE_UIDS:
        value = str(ds.get(keyword) or "")
        if not UID(value).is_valid:
            raise CannotReportError(f"the source's {keyword} {value!r} is not a valid UID")
    out = Dataset()
    for elem in ds:
        if elem.tag.is_private or elem.tag == 0x7FE00010 or not _valid(elem):
            continue
        out.add(elem)
    if not out.get("SpecificCharacterSet"):
        out.pop("SpecificCharacterSet", None)
    if out.get("PatientIdentityRemoved") == "YES" and not (
            out.get("DeidentificationMethod") or out.get("DeidentificationMethodCodeSequence")):
        out.DeidentificationMethod = "not stated by the source instance"
    for keyword in _TYPE2:
        if keyword not in out:
            setattr(out, keyword, "")
    return out


# ---- building ------------------------------------------------------------------------------------
def _item(name: Code, value, relation=hd.sr.RelationshipTypeValues.HAS_PROPERTIES):
    if isinstance(value, Code):
        return hd.sr.CodeContentItem(name=name, value=value, relationship_type=relation)
    return hd.sr.NumContentItem(name=name, value=value, unit=UNIT_ONE, relationship_type=relation)


def _algorithm(name: str | None, version: str | None) -> hd.sr.AlgorithmIdentification:
    return hd.sr.AlgorithmIdentification(str(name), str(version))


def _answered_by(record: Prediction) -> dict[str, tuple[str | None, str | None]]:
    """Task -> (model, version) that answered it, when a cascade of models did (else empty):
    the first stage that has the task, as :func:`radroute.inference.record.chain` takes it."""
    models = record.models or []
    if len({(m.get("name"), m.get("version")) for m in models}) < 2:
        return {}
    out: dict[str, tuple[str | None, str | None]] = {}
    for m in models:
        for task in m.get("tasks") or ():
            out.setdefault(task, (m.get("name"), m.get("version")))
    return out


def _task_item(task: str, p: TaskPrediction, algorithm: tuple[str | None, str | None] | None
               ) -> hd.sr.QualitativeEvaluation:
    evaluation = hd.sr.QualitativeEvaluation(task_code(task), label_code(p.label))
    children = list(_algorithm(*algorithm)) if algorithm else []  # a cascade: who answered it
    children += [_item(codes.DCM.Probability, p.score), _item(ABSTAINED, YES if p.abstained else NO)]
    if p.source != DEFAULT_SOURCE:  # a DICOM tag gave (or split) the answer
        children.append(_item(SOURCE, Code(p.source, CODING_SCHEME, p.source)))
    for cls, prob in p.probabilities.items():
        entry = _item(CLASS, label_code(cls))
        entry.ContentSequence = hd.sr.ContentSequence([_item(codes.DCM.Probability, prob)])
        children.append(entry)
    evaluation[0].ContentSequence = hd.sr.ContentSequence(children)
    return evaluation


def _tracking(record: Prediction) -> tuple[str, str]:
    """The group's Tracking Identifier and UID (derived from the source, its frame, the model)."""
    what = record.sop_instance_uid or f"series {record.series_instance_uid}"
    if record.frame is not None:
        what += f" frame {record.frame}"
    uid = generate_uid(entropy_srcs=["radroute-group", what, str(record.model), str(record.model_version)])
    return f"radroute {record.model}: {what}"[:64], uid


def _group(record: Prediction, images: Sequence[Dataset]) -> hd.sr.MeasurementsAndQualitativeEvaluations:
    frames = [record.frame + 1] if record.frame is not None else None
    sources = [hd.sr.SourceImageForMeasurementGroup(ds.SOPClassUID, ds.SOPInstanceUID, frames)
               for ds in images]
    identifier, uid = _tracking(record)
    answered_by = _answered_by(record)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=uid, identifier=identifier),
        algorithm_id=_algorithm(record.model, record.model_version),
        qualitative_evaluations=[_task_item(t, p, answered_by.get(t)) for t, p in record.predictions.items()],
        source_images=sources)
    items = group[0].ContentSequence
    if record.body_part is not None:
        items.append(_item(codes.DCM.TargetRegion, label_code(record.body_part),
                           hd.sr.RelationshipTypeValues.CONTAINS))
    if record.instances is not None:
        items.append(_item(INSTANCES, record.instances, hd.sr.RelationshipTypeValues.CONTAINS))
    return group


def _images_of(record: Prediction, sources: Sequence[Dataset]) -> list[Dataset]:
    """The source instances a record is about: its own, or (a series aggregate) all of them."""
    if record.sop_instance_uid is None:
        return list(sources)
    found = [ds for ds in sources if ds.SOPInstanceUID == record.sop_instance_uid]
    if not found:
        raise CannotReportError(f"no source header for SOPInstanceUID {record.sop_instance_uid}")
    return found


def sr_uids(records: Sequence[Prediction], source: Dataset) -> tuple[str, str]:
    """(SeriesInstanceUID, SOPInstanceUID) of the SR: derived from the source series / instance
    and the model, so classifying the same instance with the same model again gives the same SR
    (a destination that has it does not store it twice)."""
    first = records[0]
    subject = first.sop_instance_uid or f"series {first.series_instance_uid}"
    frames = ",".join(str(r.frame) for r in records)
    series = generate_uid(entropy_srcs=["radroute-sr-series", str(source.get("SeriesInstanceUID"))])
    instance = generate_uid(entropy_srcs=["radroute-sr", subject, frames, str(first.model),
                                          str(first.model_version)])
    return series, instance


def build_sr(predictions: Prediction | Sequence[Prediction], source_datasets: Dataset | Sequence[Dataset]
             ) -> hd.sr.ComprehensiveSR:
    """The Comprehensive SR (TID 1500) of classified records about ``source_datasets``.

    ``predictions``: the records of one instance (one per frame of a multi-frame instance) or
    one series aggregate (``sop_instance_uid`` ``None``: its group references every source).
    ``source_datasets``: the source instances' headers (pydicom, pixels not needed); the SR takes
    the Patient and Study of the first (through :func:`clean_source`). Records that are not
    :attr:`Prediction.ok` are left out; raises :class:`CannotReportError` when none is left.
    """
    records = [predictions] if isinstance(predictions, Prediction) else list(predictions)
    sources = [source_datasets] if isinstance(source_datasets, Dataset) else list(source_datasets)
    records = [r for r in records if r.ok]
    if not records or not sources:
        raise CannotReportError("an SR needs at least one classified record and its source header")
    with warnings.catch_warnings():  # the source's invalid values, which are left out
        warnings.simplefilter("ignore", UserWarning)
        return _build(records, [clean_source(ds) for ds in sources])


def _build(records: list[Prediction], sources: list[Dataset]) -> hd.sr.ComprehensiveSR:
    from radroute import __version__

    first = records[0]
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=generate_uid(entropy_srcs=["radroute-device", str(first.model)]), name="radroute",
        manufacturer_name="radroute", model_name=str(first.model)[:64])
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))
    report = hd.sr.MeasurementReport(
        observation_context=context, procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=[_group(r, _images_of(r, sources)) for r in records])
    series_uid, instance_uid = sr_uids(records, sources[0])
    sr = hd.sr.ComprehensiveSR(
        evidence=sources, content=report[0], series_instance_uid=series_uid,
        series_number=SERIES_NUMBER, sop_instance_uid=instance_uid,
        instance_number=int(sources[0].get("InstanceNumber") or 1), manufacturer="radroute",
        is_complete=True, series_description=SERIES_DESCRIPTION)
    sr.SoftwareVersions = __version__
    scheme = Dataset()
    scheme.CodingSchemeDesignator = CODING_SCHEME
    scheme.CodingSchemeName = "radroute labels and tasks"
    scheme.CodingSchemeResponsibleOrganization = "radroute"
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr


def write_sr(records: Sequence[Prediction], folder: str | Path) -> Path | None:
    """Write the SR of one classified DICOM file's records to ``folder/<SOPInstanceUID>.dcm``.

    Reads the source header from the records' ``path``. Returns ``None`` (nothing written) when
    no record is classified or the input is not DICOM (PNG, NIfTI).
    """
    ok = [r for r in records if r.ok and r.sop_instance_uid]
    if not ok or not ok[0].path:
        return None
    source = pydicom.dcmread(ok[0].path, stop_before_pixels=True, force=True)
    sr = build_sr(ok, source)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{ok[0].sop_instance_uid}.dcm"
    sr.save_as(target, enforce_file_format=True)
    return target


# ---- reading back --------------------------------------------------------------------------------
def is_radroute_sr(ds: Dataset) -> bool:
    """An SR document that declares radroute's coding scheme."""
    return ds.get("Modality") == "SR" and any(
        item.get("CodingSchemeDesignator") == CODING_SCHEME
        for item in ds.get("CodingSchemeIdentificationSequence", []))


def _children(item: Dataset) -> list[Dataset]:
    return list(item.get("ContentSequence", []))


def _key(code: Dataset | Code) -> tuple[str, str]:
    """(scheme, value) of a code item or a code: what identifies a concept."""
    if isinstance(code, Code):
        return code.scheme_designator, code.value
    value = code.get("CodeValue") or code.get("LongCodeValue") or code.get("URNCodeValue")
    return str(code.get("CodingSchemeDesignator")), str(value)


def _name(item: Dataset) -> tuple[str, str]:
    return _key(item.ConceptNameCodeSequence[0])


def _value(item: Dataset) -> tuple[str, str]:
    return _key(item.ConceptCodeSequence[0])


def _label(key: tuple[str, str]) -> str:
    return _LABEL_OF.get(key, key[1])


def _number(item: Dataset) -> float:
    return float(item.MeasuredValueSequence[0].NumericValue)


_PROBABILITY, _ABSTAINED, _CLASS = _key(codes.DCM.Probability), _key(ABSTAINED), _key(CLASS)


def _text(item: Dataset) -> str | None:
    return None if item.TextValue == str(None) else str(item.TextValue)


def _algorithm_of(items: list[Dataset]) -> tuple[str | None, str | None] | None:
    """(name, version) of a TID 4019 among ``items``, or ``None``."""
    found = {_name(i): _text(i) for i in items if i.ValueType == "TEXT"}
    if _key(codes.DCM.AlgorithmName) not in found:
        return None
    return found[_key(codes.DCM.AlgorithmName)], found.get(_key(codes.DCM.AlgorithmVersion))


def _task(item: Dataset) -> tuple[TaskPrediction, tuple[str | None, str | None] | None]:
    """A task's answer, and the model that gave it when the SR names one (a cascade)."""
    score, abstained, source, probabilities = None, False, DEFAULT_SOURCE, {}
    for child in _children(item):
        name, kind = _name(child), child.ValueType
        if kind == "NUM" and name == _PROBABILITY:
            score = _number(child)
        elif kind == "CODE" and name == _ABSTAINED:
            abstained = _value(child) == _key(YES)
        elif kind == "CODE" and name == _key(SOURCE):
            source = _value(child)[1]
        elif kind == "CODE" and name == _CLASS:
            probs = [_number(c) for c in _children(child) if c.ValueType == "NUM"]
            probabilities[_label(_value(child))] = probs[0] if probs else None
    answer = TaskPrediction(label=_label(_value(item)), score=score, probabilities=probabilities,
                            abstained=abstained, source=source)
    return answer, _algorithm_of(_children(item))


def _record(group: Dataset) -> Prediction:
    record = Prediction(predictions={})
    images, answered_by = [], {}
    record.model, record.model_version = _algorithm_of(_children(group)) or (None, None)
    for item in _children(group):
        name, kind = _name(item), item.ValueType
        if kind == "IMAGE":
            images.append(item.ReferencedSOPSequence[0])
        elif kind == "CODE" and name == _key(codes.DCM.TargetRegion):
            record.body_part = _label(_value(item))
        elif kind == "NUM" and name == _key(INSTANCES):
            record.instances = int(_number(item))
        elif kind == "CODE" and any(_name(c) == _PROBABILITY for c in _children(item)):
            task = VIEW_TASK if name == _key(codes.DCM.ImageView) else name[1]
            record.predictions[task], answered_by[task] = _task(item)
    models: dict[tuple[str | None, str | None], list[str]] = {}
    for task in record.predictions:
        models.setdefault(answered_by[task] or (record.model, record.model_version), []).append(task)
    record.models = [{"name": n, "version": v, "tasks": tasks} for (n, v), tasks in models.items()]
    if record.instances is None and images:  # one image: the record's own (and its frame)
        ref = images[0]
        record.sop_instance_uid = str(ref.ReferencedSOPInstanceUID)
        frames = ref.get("ReferencedFrameNumber")
        if frames is not None:
            record.frame = int(frames[0] if isinstance(frames, Sequence) else frames) - 1
    record.abstained = any(p.abstained for p in record.predictions.values())
    return record


def _groups(ds: Dataset) -> Iterable[Dataset]:
    for container in _children(ds):
        if container.ValueType == "CONTAINER" and _name(container) == _key(codes.DCM.ImagingMeasurements):
            yield from (g for g in _children(container) if g.ValueType == "CONTAINER"
                        and _name(g) == _key(codes.DCM.MeasurementGroup))


def _series_of(ds: Dataset, sop_instance_uid: str | None) -> str | None:
    """The source series of an instance, from the SR's evidence sequence."""
    for study in ds.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.get("ReferencedSeriesSequence", []):
            for inst in series.get("ReferencedSOPSequence", []):
                if sop_instance_uid is None or inst.ReferencedSOPInstanceUID == sop_instance_uid:
                    return str(series.SeriesInstanceUID)
    return None


def read_sr_results(ds: Dataset | str | Path) -> list[Prediction] | None:
    """The records stored in a radroute SR (a dataset or a file), in the SR's order; ``None``
    for anything else (an image, another producer's SR)."""
    if not isinstance(ds, Dataset):
        ds = pydicom.dcmread(ds)
    if not is_radroute_sr(ds):
        return None
    out = []
    for group in _groups(ds):
        record = _record(group)
        record.series_instance_uid = _series_of(ds, record.sop_instance_uid)
        out.append(record)
    return out


def sr_results(path: str | Path) -> list[dict] | None:
    """The JSON records of a radroute SR file (``inspect``'s ``results`` field); ``None`` for any
    other file, or one that cannot be read back."""
    try:
        records = read_sr_results(pydicom.dcmread(path, force=True))
    except Exception:  # noqa: BLE001 - not ours, or broken: inspect reports the file as it is
        return None
    return None if records is None else [r.to_dict() for r in records]


__all__ = ["BODY_PART_CODES", "CODING_SCHEME", "VIEW_CODES", "CannotReportError", "build_sr",
           "clean_source", "is_radroute_sr", "label_code", "read_sr_results", "sr_results", "sr_uids",
           "task_code", "write_sr"]
