"""Which model sees which image: the policy reads the tags."""
from __future__ import annotations

import pytest

from radroute.errors import NoPixelDataError, WrongModalityError
from radroute.inference.policy import DEFAULT_MODEL_NO_MODALITY, ModelPolicy
from radroute.io import read_header
from radroute.io.types import Metadata


@pytest.mark.parametrize("name, expected", [
    ("files/wg04/CT1_UNC.dcm", "ct-mr-region"),
    ("files/wg04/MR4_UNC.dcm", "ct-mr-region"),
    ("files/wg04/RG1_J2KI.dcm", "chest-view"),
    ("files/fo-dicom/CR-MONO1-10-chest.dcm", "chest-view"),
])
def test_default_model_from_modality(dicom_zoo, name, expected):
    assert ModelPolicy().model_for(read_header(dicom_zoo / name)) == expected


def test_default_model_without_modality_and_refusal(dicom_zoo, data_dir):
    policy = ModelPolicy()
    jpeg = read_header(data_dir / "medpix2/images/MPX1009_synpic46283.jpg")
    assert policy.model_for(jpeg) == DEFAULT_MODEL_NO_MODALITY
    assert policy.model_for(Metadata(format="nifti")) == DEFAULT_MODEL_NO_MODALITY
    with pytest.raises(WrongModalityError):
        policy.model_for(read_header(dicom_zoo / "files/wg04/US1_UNC.dcm"))
    with pytest.raises(NoPixelDataError):
        policy.model_for(Metadata(format="dicom", modality="SR"))  # no Rows: no pixels


def test_models_and_description():
    policy = ModelPolicy()
    assert policy.models == ["chest-view", "ct-mr-region"]
    assert "CR/DX/DR -> chest-view" in policy.describe()
