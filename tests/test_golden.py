"""Today's ``classify`` and ``route --dry-run`` records equal the ones saved before the refactor."""
from __future__ import annotations

import json

import pytest

from tests.golden import FIXTURE, MODEL, records
from tests.helpers import need_data

TOLERANCE = 1e-5


def _same(got, want, where: str = "") -> None:
    """Equal JSON, numbers within :data:`TOLERANCE` (float kernels differ across CPUs)."""
    if isinstance(want, float) and isinstance(got, (int, float)):
        assert abs(got - want) <= TOLERANCE, f"{where}: {got} != {want}"
    elif isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            _same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: length"
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{where}[{i}]")
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


@pytest.fixture(scope="module")
def today(tmp_path_factory):
    return records(need_data("dicom_zoo"), MODEL, tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("kind", ["classify", "route_instance", "route_series"])
def test_records_equal_the_saved_ones(today, kind):
    saved = json.loads(FIXTURE.read_text())[kind]
    got = today[kind]
    assert len(got) == len(saved)
    for g, w in zip(got, saved):
        _same(g, w, w.get("path") or "")
