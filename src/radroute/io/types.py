"""The normalised records the reading layer produces; everything downstream consumes these."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class Metadata:
    """Tags of one image file. Every field is ``None`` when absent or not applicable."""

    path: str | None = None
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    series_instance_uid: str | None = None
    study_instance_uid: str | None = None
    modality: str | None = None
    body_part_examined: str | None = None
    view_position: str | None = None
    patient_orientation: str | None = None
    image_laterality: str | None = None
    study_description: str | None = None
    series_description: str | None = None
    protocol_name: str | None = None
    patient_age: str | None = None
    #: for the patient's age when PatientAge is absent (never printed by ``inspect``)
    patient_birth_date: str | None = None
    study_date: str | None = None
    pixel_spacing: tuple[float, float] | None = None
    photometric: str | None = None
    transfer_syntax: str | None = None
    rows: int | None = None
    columns: int | None = None
    frames: int | None = None
    bits_stored: int | None = None
    #: radroute's normalised body part from the tags (see :mod:`radroute.vocab`), never ``None``.
    body_part: str = "unknown"
    #: the file's format: ``dicom``, ``png``, ``jpeg``, ``tiff``, ``nifti``.
    format: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Image:
    """One 2-D image ready for a model: ``pixels`` float32 (H, W), windowed into [0, 1]."""

    pixels: np.ndarray
    meta: Metadata
    #: frame (multi-frame DICOM) or slice (NIfTI) index, ``None`` for single-image files.
    frame: int | None = None


@dataclass
class Volume:
    """A 3-D volume, slices ordered superior -> inferior.

    ``voxels`` is float32 (Z, Y, X) in modality units (HU for CT), not windowed.
    ``z_mm`` is each slice's position along the patient superior axis (decreasing),
    ``spacing`` is (dz, dy, dx) in mm.
    """

    voxels: np.ndarray
    spacing: tuple[float, float, float]
    z_mm: np.ndarray
    meta: Metadata
    #: the source file of each slice (DICOM series) or ``None`` (NIfTI).
    slice_paths: list[str] | None = None
    extra: dict = field(default_factory=dict)
