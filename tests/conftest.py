"""Shared fixtures; plain helpers live in tests/helpers.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import need_data


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return need_data()


@pytest.fixture(scope="session")
def dicom_zoo() -> Path:
    return need_data("dicom_zoo")
