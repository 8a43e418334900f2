"""Every real file in dicom_zoo: tags match labels.csv, pixels decode into a sane [0, 1] image."""
from __future__ import annotations

import csv

import numpy as np
import pytest
from pydicom.uid import UID

from radroute.errors import UnsupportedTransferSyntaxError
from radroute.io import iter_images, read_header, read_image
from tests.helpers import data_root

ZOO = data_root() / "dicom_zoo"
ROWS = list(csv.DictReader(open(ZOO / "labels.csv"))) if (ZOO / "labels.csv").exists() else []
TWELVE_BIT_JPEG = {"files/wg04/RG3_JPLY.dcm", "files/pydicom/JPEG-lossy.dcm"}


def _ids(rows):
    return [r["file"].removeprefix("files/") for r in rows]


@pytest.fixture(autouse=True)
def _need_zoo(dicom_zoo):  # skips with a clear reason when the shared data is absent
    return dicom_zoo


def test_zoo_is_complete():
    assert len(ROWS) >= 50, "dicom_zoo/labels.csv should list the whole zoo"


@pytest.mark.parametrize("row", ROWS, ids=_ids(ROWS))
def test_header_matches_labels(row):
    meta = read_header(ZOO / row["file"])
    assert meta.format == "dicom"
    assert meta.modality == (row["modality_tag"] or None)
    assert meta.body_part_examined == (row["body_part_examined_tag"] or None)
    assert meta.view_position == (row["view_position_tag"] or None)
    assert meta.study_description == (row["study_description"] or None)
    assert (meta.rows, meta.columns, meta.frames) == (int(row["rows"]), int(row["cols"]), int(row["frames"]))
    assert meta.photometric == row["photometric"]
    assert meta.transfer_syntax == (row["transfer_syntax_uid"] or None)
    assert UID(meta.sop_class_uid).name == row["sop_class"]
    assert meta.sop_instance_uid and meta.series_instance_uid


@pytest.mark.parametrize("row", ROWS, ids=_ids(ROWS))
def test_pixels_decode_to_sane_range(row):
    path = ZOO / row["file"]
    if row["file"] in TWELVE_BIT_JPEG:
        with pytest.raises(UnsupportedTransferSyntaxError) as info:
            read_image(path, size=128)
        assert info.value.code == "unsupported_transfer_syntax"
        assert "12-bit" in info.value.message and info.value.path == str(path)  # the reason is named
        return
    image = read_image(path, size=128)
    pixels = image.pixels
    assert pixels.dtype == np.float32 and pixels.ndim == 2
    assert max(pixels.shape) == 128
    rows, cols = int(row["rows"]), int(row["cols"])
    assert abs(pixels.shape[0] / pixels.shape[1] - rows / cols) < 0.05  # aspect kept
    assert np.isfinite(pixels).all() and pixels.min() >= 0.0 and pixels.max() <= 1.0
    assert pixels.std() > 0.02, "an image should not come out flat"
    assert image.frame == (0 if int(row["frames"]) > 1 else None)


def _lung_and_mediastinum(pixels: np.ndarray) -> tuple[float, float]:
    h, w = pixels.shape
    band = slice(int(0.3 * h), int(0.6 * h))
    lungs = np.r_[pixels[band, int(0.2 * w):int(0.35 * w)].ravel(), pixels[band, int(0.65 * w):int(0.8 * w)].ravel()]
    return float(lungs.mean()), float(pixels[band, int(0.45 * w):int(0.55 * w)].mean())


@pytest.mark.parametrize("name", ["fo-dicom/CR-MONO1-10-chest.dcm", "wg04/RG1_J2KI.dcm"])
def test_monochrome1_chest_has_dark_lungs(name):
    image = read_image(ZOO / "files" / name, size=256)
    assert image.meta.photometric == "MONOCHROME1"
    lungs, mediastinum = _lung_and_mediastinum(image.pixels)
    assert lungs < mediastinum - 0.15, (lungs, mediastinum)


def test_file_without_meta_is_read_with_force():
    path = ZOO / "files/fo-dicom/CR-MONO1-10-chest.dcm"
    assert path.read_bytes()[128:132] != b"DICM"
    meta = read_header(path)
    assert meta.transfer_syntax is None and meta.modality == "CR" and meta.body_part == "chest"
    assert read_image(path).pixels.shape == (440, 440)


@pytest.mark.parametrize("name", ["dicomdir_CR_cspine_LL_16x16.dcm", "dicomdir_CT_head_16x16.dcm"])
def test_header_only_16x16_files(name):
    path = ZOO / "files/pydicom" / name
    meta = read_header(path)
    assert (meta.rows, meta.columns) == (16, 16)
    assert meta.body_part in ("spine", "head")
    pixels = read_image(path).pixels
    assert pixels.shape == (16, 16) and 0 <= pixels.min() <= pixels.max() <= 1


def test_multiframe_all_frames_and_a_chosen_frame():
    path = ZOO / "files/pydicom-data/emri_small.dcm"
    frames = list(iter_images(path))
    assert [f.frame for f in frames] == list(range(10))
    assert not np.allclose(frames[0].pixels, frames[5].pixels)
    np.testing.assert_array_equal(read_image(path, frame=5).pixels, frames[5].pixels)
    assert [f.frame for f in iter_images(path, frames=[2, 7])] == [2, 7]
    with pytest.raises(IndexError):
        read_image(path, frame=10)


def test_multiframe_jpeg_ls_matches_uncompressed():
    plain = [f.pixels for f in iter_images(ZOO / "files/pydicom-data/emri_small.dcm")]
    jpegls = [f.pixels for f in iter_images(ZOO / "files/pydicom-data/emri_small_jpeg_ls_lossless.dcm")]
    np.testing.assert_allclose(np.stack(plain), np.stack(jpegls), atol=1e-6)


@pytest.mark.parametrize("name", ["wg04/CT1_J2KR.dcm", "wg04/CT1_JLSL.dcm", "wg04/CT1_JPLL.dcm", "wg04/CT1_RLE.dcm"])
def test_lossless_syntaxes_match_uncompressed(name):
    reference = read_image(ZOO / "files/wg04/CT1_UNC.dcm").pixels
    np.testing.assert_allclose(read_image(ZOO / "files" / name).pixels, reference, atol=1e-6)


def test_colour_is_converted_to_grayscale():
    for name in ("wg04/US1_UNC.dcm", "pydicom/examples_ybr_color.dcm", "wg04/VL1_J2KR.dcm"):
        image = read_image(ZOO / "files" / name)
        assert image.pixels.ndim == 2
        assert image.pixels.shape == (image.meta.rows, image.meta.columns)


@pytest.mark.parametrize("name", ["wg04/CT1_J2KI.dcm", "wg04/CT1_JLSN.dcm"])
def test_lossy_syntaxes_stay_close_and_padding_is_still_found(name):
    # lossy coding moves Pixel Padding Value (-2000) a little: the window must still ignore it
    reference = read_image(ZOO / "files/wg04/CT1_UNC.dcm", size=128).pixels
    pixels = read_image(ZOO / "files" / name, size=128).pixels
    assert float(np.abs(pixels - reference).mean()) < 0.03
