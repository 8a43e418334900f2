"""Shared fixtures; plain helpers live in tests/helpers.py."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import need_data
from tests.inference.tiny import make_tiny_package


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return need_data()


@pytest.fixture(scope="session")
def dicom_zoo() -> Path:
    return need_data("dicom_zoo")


@pytest.fixture(scope="session")
def tiny_package(tmp_path_factory) -> Path:
    """A saved two-task package (modality, region) of a few thousand random weights."""
    path = tmp_path_factory.mktemp("packages") / "tiny"
    make_tiny_package(path)
    return path


@pytest.fixture(scope="session", autouse=True)
def _onnx_cache(tmp_path_factory):
    """Exported graphs go to a temporary cache, never to the user's ~/.cache (session-wide, so
    that module fixtures see it too)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RADROUTE_CACHE", str(tmp_path_factory.mktemp("radroute-cache")))
        yield
