"""DICOM series and NIfTI volumes: slice order, superior -> inferior orientation, spacing."""
from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
import pytest

from radroute.errors import RadrouteError
from radroute.io import iter_images, read_image, read_volume
from tests.helpers import need_data


@pytest.fixture(scope="module")
def series_dir():
    return need_data("totalseg_ct", "dicom_series_ct_abdomen")


@pytest.fixture(scope="module")
def series(series_dir):
    return read_volume(series_dir)


def _label_ids(*names: str) -> list[int]:
    class_map = json.loads(need_data("totalseg_ct", "segmentations", "class_map_total_v2.json").read_text())
    return [int(k) for k, v in class_map.items() if v.startswith(names)]


def test_series_is_ordered_superior_to_inferior(series, series_dir):
    assert series.voxels.shape == (20, 512, 512) and series.voxels.dtype == np.float32
    assert np.all(np.diff(series.z_mm) < 0), "z must decrease: head first"
    assert series.spacing == pytest.approx((2.0, 0.9765625, 0.9765625))
    positions = [float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in series.slice_paths]
    np.testing.assert_allclose(positions, series.z_mm)
    assert -1100 < series.voxels.min() < -900 and series.voxels.max() > 500  # Hounsfield units
    assert series.meta.modality == "CT" and series.meta.frames == 20


def test_shuffled_series_with_random_names_reads_the_same(series, series_dir, tmp_path):
    files = sorted(series_dir.iterdir())
    rng = random.Random(7)
    rng.shuffle(files)
    renamed = {}
    for i, src in enumerate(files):
        name = f"{rng.randrange(10**8):08d}_{i}"
        shutil.copy(src, tmp_path / name)
        renamed[name] = src.name
    volume = read_volume(tmp_path)
    assert [renamed[p.rsplit("/", 1)[-1]] for p in volume.slice_paths] == [p.rsplit("/", 1)[-1] for p in series.slice_paths]
    np.testing.assert_array_equal(volume.voxels, series.voxels)
    np.testing.assert_array_equal(volume.z_mm, series.z_mm)


def test_series_matches_its_segmentation(series):
    """The liver (patient right) sits on the image left, the spleen on the right, in HU that fit."""
    seg = read_volume(need_data("totalseg_ct", "segmentations", "example_seg_dicom.nii.gz"))
    np.testing.assert_allclose(seg.z_mm, series.z_mm)
    labels = np.rint(seg.voxels).astype(int)
    liver, spleen = np.isin(labels, _label_ids("liver")), np.isin(labels, _label_ids("spleen"))
    assert np.nonzero(liver)[2].mean() < 256 < np.nonzero(spleen)[2].mean()
    assert 40 < series.voxels[liver].mean() < 150
    assert series.voxels[:, :, ::-1][liver].mean() < 40  # mirrored, the mask misses the liver


def test_nifti_is_oriented_head_first():
    ct = read_volume(need_data("totalseg_ct", "volumes", "example_ct_sm.nii.gz"))
    seg = read_volume(need_data("totalseg_ct", "segmentations", "example_seg.nii.gz"))
    assert ct.voxels.shape == seg.voxels.shape == (30, 101, 122)
    assert ct.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert np.all(np.diff(ct.z_mm) < 0)
    labels = np.rint(seg.voxels).astype(int)
    lung_per_slice = np.isin(labels, _label_ids("lung")).sum(axis=(1, 2))
    assert lung_per_slice[0] > 500 and lung_per_slice[-10:].sum() == 0  # lungs at the top
    liver = np.isin(labels, _label_ids("liver"))
    assert np.nonzero(liver)[2].mean() < ct.voxels.shape[2] / 2  # patient right on image left
    rows = np.nonzero(np.isin(labels, _label_ids("vertebrae")))[1]
    assert rows.mean() > ct.voxels.shape[1] / 2  # spine posterior: bottom of the image
    assert 40 < ct.voxels[liver].mean() < 150


def test_nifti_slices_as_images():
    path = need_data("totalseg_ct", "volumes", "example_ct_sm.nii.gz")
    images = list(iter_images(path, size=64))
    assert len(images) == 30 and images[0].frame == 0
    assert all(im.pixels.shape == (53, 64) and 0 <= im.pixels.min() and im.pixels.max() <= 1 for im in images)
    middle = read_image(path)
    assert middle.frame == 15 and middle.meta.format == "nifti"
    lung = read_image(path, frame=0, window="lung").pixels
    assert lung.std() > 0.1


def test_not_a_volume(tmp_path):
    with pytest.raises(RadrouteError) as info:
        read_volume(tmp_path)
    assert info.value.code == "not_a_volume"
    with pytest.raises(RadrouteError) as info:
        read_volume(get_testdata_file("CT_small.dcm"))
    assert info.value.code == "not_a_volume"
