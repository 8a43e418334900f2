"""pydicom's own test files (shipped with the dependency): every one gives an image or a typed error."""
from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom.data
from pydicom.data import get_testdata_file

from radroute.errors import ERROR_CODES, RadrouteError
from radroute.io import read_header, read_image


# the files inside the pydicom wheel (get_testdata_files("*") would also try to download more)
TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"


def test_every_pydicom_test_file_reads_or_fails_typed():
    outcomes: Counter[str] = Counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(TEST_FILES.iterdir()):
            try:
                pixels = read_image(path, size=64).pixels
            except RadrouteError as exc:
                assert exc.code in ERROR_CODES and exc.message
                outcomes[exc.code] += 1
                continue
            assert pixels.dtype == np.float32 and pixels.ndim == 2 and max(pixels.shape) == 64
            assert np.isfinite(pixels).all() and 0 <= pixels.min() <= pixels.max() <= 1
            outcomes["ok"] += 1
    assert outcomes["ok"] >= 50, outcomes
    assert outcomes["no_pixel_data"] >= 5  # RT plans, SRs, waveforms
    assert outcomes["not_dicom"] >= 3  # README.txt, .json, .gz among the test files


def test_specific_pydicom_files():
    def code(name):
        try:
            read_image(get_testdata_file(name))
        except RadrouteError as exc:
            return exc.code
        return "ok"

    assert code("JPGExtended.dcm") == "unsupported_transfer_syntax"  # 12-bit JPEG
    assert code("MR_truncated.dcm") == "corrupt_pixel_data"
    assert code("rtplan_truncated.dcm") == "unreadable"
    assert code("rtplan.dcm") == "no_pixel_data"
    assert code("meta_missing_tsyntax.dcm") == "corrupt_pixel_data"  # no Bits Allocated
    assert code("SC_rgb_rle_32bit.dcm") == "ok"
    assert read_header(get_testdata_file("ExplVR_BigEndNoMeta.dcm")).transfer_syntax is None
