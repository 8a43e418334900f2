"""Fixtures for the router tests: a tiny real model package, distinct copies of real files."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import need_data
from tests.routing.peers import distinct_copies, missing_binaries


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A randomly initialised two-task package (modality CT/MR, region head/thorax/abdomen);
    region abstains below 0.4 so some images go to review."""
    from tests.inference.tiny import make_tiny_package

    path = tmp_path_factory.mktemp("model") / "tiny"
    make_tiny_package(path)
    cfg = json.loads((path / "radroute.json").read_text())
    cfg["thresholds"] = {"modality": 0.0, "region": 0.4}
    (path / "radroute.json").write_text(json.dumps(cfg, indent=2))
    return path


@pytest.fixture(scope="session")
def zoo_files() -> list[Path]:
    return sorted(need_data("dicom_zoo", "files").rglob("*.dcm"))


@pytest.fixture(scope="session")
def zoo_copies(zoo_files, tmp_path_factory) -> list[Path]:
    """Every dicom_zoo file once, with new SOPInstanceUIDs (the zoo repeats some UIDs)."""
    return distinct_copies(zoo_files, tmp_path_factory.mktemp("zoo_copies"))


@pytest.fixture()
def peers_available():
    missing = missing_binaries("storescu", "storescp", "echoscu", "Orthanc")
    if missing:
        pytest.skip(f"DICOM peer binaries not installed: {', '.join(missing)} "
                    "(apt-get install dcmtk orthanc)")


@pytest.fixture(scope="session")
def confident_model(tmp_path_factory) -> Path:
    """The same tiny package with no abstention threshold: every prediction is confident."""
    from tests.inference.tiny import make_tiny_package

    path = tmp_path_factory.mktemp("model") / "tiny-confident"
    make_tiny_package(path)
    return path
