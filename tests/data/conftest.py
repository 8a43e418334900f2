"""Fixtures building small real datasets in tmp_path (real images from the shared data and
pydicom's own test files, written into the layouts the readers expect)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import need_data


@pytest.fixture(scope="session")
def medpix_images() -> list[Path]:
    """Twelve real MedPix JPEGs (CT and MR)."""
    files = sorted(need_data("medpix2", "images").glob("*.jpg"))
    if len(files) < 12:
        pytest.skip("medpix2 has fewer than 12 images")
    return files[:: max(1, len(files) // 12)][:12]


def write_dicom_copy(dest: Path, source: str = "CT_small.dcm", *, patient: str = "P1",
                     study_uid: str | None = None) -> str:
    """Copy a pydicom test file to ``dest`` with a fresh SOPInstanceUID; return the UID."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    path = get_testdata_file(source)
    if path is None:
        pytest.skip(f"pydicom test file {source} not available")
    ds = pydicom.dcmread(path)
    uid = generate_uid()
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.PatientID = patient
    ds.StudyInstanceUID = study_uid or generate_uid()
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest)
    return uid


@pytest.fixture()
def class_folders(tmp_path, medpix_images) -> Path:
    """``root/<class>/*.jpg`` with 3 classes of 4 real images."""
    root = tmp_path / "folders"
    for i, f in enumerate(medpix_images):
        cls = ("head", "thorax", "abdomen")[i % 3]
        (root / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / cls / f.name)
    return root
