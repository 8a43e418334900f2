"""VOI windows, presets, percentile window with Pixel Padding Value, resize-before-window."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from radroute.io import WINDOW_PRESETS, read_image, window_array
from radroute.io.dicom import _decode_j2k_reduced, decode_frame, j2k_reduce_level, read_dataset
from radroute.io.normalise import file_voi, normalise_frame
from radroute.io.resize import resize
from radroute.io.windowing import apply_window, percentile_range

ZOO_FILES = "files"


def test_window_array_presets():
    hu = np.array([-2000.0, -1000.0, 40.0, 240.0, 3000.0], dtype=np.float32)
    soft = window_array(hu, "soft_tissue")  # 40 / 400: [-160, 240]
    np.testing.assert_allclose(soft, [0, 0, 0.5, 1, 1], atol=1e-6)
    lung = window_array(hu, "lung")  # -600 / 1500: [-1350, 150]
    assert 0 < lung[1] < 0.5 < lung[3] == 1.0 and lung[0] == 0
    assert set(WINDOW_PRESETS) == {"brain", "soft_tissue", "abdomen", "lung", "bone"}
    with pytest.raises(ValueError):
        window_array(hu, "liver-ish")


def test_linear_window_follows_the_standard():
    # PS3.3 C.11.2.1.2: x <= c - 0.5 - (w-1)/2 -> 0; x > c - 0.5 + (w-1)/2 -> 1
    c, w = 40.0, 400.0
    out = apply_window(np.array([c - 0.5 - (w - 1) / 2, c - 0.5, c - 0.5 + (w - 1) / 2]), c, w)
    np.testing.assert_allclose(out, [0.0, 0.5, 1.0], atol=1e-6)
    sigmoid = apply_window(np.array([c - 1000, c, c + 1000]), c, w, "SIGMOID")
    assert sigmoid[0] < 0.01 and abs(sigmoid[1] - 0.5) < 1e-6 and sigmoid[2] > 0.99


def test_percentile_range_ignores_excluded_pixels():
    values = np.concatenate([np.full(5000, -2000.0), np.linspace(-1000, 1000, 5000)])
    lo, hi = percentile_range(values)
    assert lo == -2000.0
    lo, hi = percentile_range(values, exclude=values == -2000.0)
    assert -1000 <= lo < -980 and 980 < hi <= 1000


def test_multi_valued_window_uses_the_first(dicom_zoo):
    ds = read_dataset(dicom_zoo / ZOO_FILES / "pydicom/J2K_pixelrep_mismatch.dcm")
    assert list(ds.WindowCenter) == [40, 40, 40] and list(ds.WindowWidth) == [100, 100, 200]
    assert file_voi(ds, 0) == {"center": 40.0, "width": 100.0, "function": "LINEAR"}


def test_presets_apply_to_ct_only(dicom_zoo):
    ct = dicom_zoo / ZOO_FILES / "wg04/CT1_UNC.dcm"
    lung, bone = read_image(ct, window="lung").pixels, read_image(ct, window="bone").pixels
    assert lung.mean() > bone.mean() + 0.1  # lung window shows soft tissue bright
    mr = dicom_zoo / ZOO_FILES / "wg04/MR1_UNC.dcm"
    np.testing.assert_array_equal(read_image(mr, window="lung").pixels, read_image(mr).pixels)
    with pytest.raises(ValueError):
        read_image(ct, window="nope")


def test_pixel_padding_value_is_left_out_of_the_percentile_window(dicom_zoo):
    ds = read_dataset(dicom_zoo / ZOO_FILES / "wg04/CT1_UNC.dcm")
    assert ds.PixelPaddingValue == -2000 and file_voi(ds, 0) is None
    raw = decode_frame(ds, 0)
    padded = raw == -2000
    assert padded.mean() > 0.1  # the circle outside the field of view
    honoured = normalise_frame(raw, ds)
    del ds.PixelPaddingValue
    ignored = normalise_frame(raw, ds)
    air = (raw > -1100 + 1024) & (raw < -900 + 1024) & ~padded  # stored = HU + 1024
    # with padding in the window the air is lifted off black; without it air is black
    assert ignored[air].mean() > 0.15 and honoured[air].mean() < 0.05


def test_resize_keeps_aspect_or_squares():
    values = np.random.default_rng(0).random((300, 150)).astype(np.float32)
    assert resize(values, 100).shape == (100, 50)
    assert resize(values, 100, keep_aspect=False).shape == (100, 100)
    assert resize(values, 600).shape == (600, 300)
    assert abs(resize(values, 30).mean() - values.mean()) < 0.01  # area averaging


def test_size_resizes_before_windowing(dicom_zoo):
    path = dicom_zoo / ZOO_FILES / "wg04/CT1_UNC.dcm"
    small = read_image(path, size=64, keep_aspect=False)
    assert small.pixels.shape == (64, 64)
    full = read_image(path).pixels
    assert abs(float(small.pixels.mean()) - float(full.mean())) < 0.02


@pytest.mark.parametrize("name", ["wg04/MG1_J2KI.dcm", "wg04/RG2_J2KR.dcm", "wg04/RG1_J2KI.dcm"])
def test_reduced_resolution_jpeg2000_matches_full_decode(dicom_zoo, name):
    path = dicom_zoo / ZOO_FILES / name
    ds = read_dataset(path)
    level = j2k_reduce_level(ds, 224)
    assert level >= 2
    full = decode_frame(ds, 0).astype(np.float32)
    half = _decode_j2k_reduced(ds, 0, 1)
    assert half.shape == ((full.shape[0] + 1) // 2, (full.shape[1] + 1) // 2)
    assert abs(float(half.mean()) - float(full[::2, ::2].mean())) < 0.01 * float(full.max())
    fast = read_image(path, size=224).pixels  # reduced decode (with fall-back levels)
    slow = normalise_frame(full, ds, size=224)
    assert fast.shape == slow.shape
    assert float(np.abs(fast - slow).mean()) < 0.02


def test_pixel_representation_mismatch_j2k_is_corrected(dicom_zoo):
    # pydicom's J2K_pixelrep_mismatch: codestream unsigned, header signed; CT values must be HU-like
    image = read_image(dicom_zoo / ZOO_FILES / "pydicom/J2K_pixelrep_mismatch.dcm", size=128, window="percentile")
    ds = read_dataset(dicom_zoo / ZOO_FILES / "pydicom/J2K_pixelrep_mismatch.dcm")
    raw = decode_frame(ds, 0)
    assert raw.min() == -2000 and raw.max() < 4096
    assert image.pixels.std() > 0.1


def test_modality_lut_sequence(dicom_zoo):
    ds = pydicom.dcmread(dicom_zoo / ZOO_FILES / "fo-dicom/CR-ModalitySequenceLUT.dcm")
    assert "ModalityLUTSequence" in ds
    pixels = read_image(dicom_zoo / ZOO_FILES / "fo-dicom/CR-ModalitySequenceLUT.dcm", size=256).pixels
    assert 0.1 < pixels.mean() < 0.9 and pixels.std() > 0.1
