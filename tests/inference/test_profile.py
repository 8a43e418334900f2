"""Slice-by-slice CT profiles: decoding, body part, CT check, and the bundled model on real volumes."""
from __future__ import annotations

import random
import shutil

import numpy as np
import pytest

from radroute.data.preprocess import Preprocessing
from radroute.errors import WrongModalityError
from radroute.inference.profile import (
    Region,
    body_part_of,
    check_ct,
    decode_regions,
    profile_volume,
    regions_from_labels,
    slices_to_input,
    smooth_along_z,
)
from radroute.io import read_volume
from radroute.io.types import Metadata, Volume
from radroute.io.windowing import window_array
from radroute.models.package import bundled_names
from tests.helpers import need_data

CLASSES = ["head", "chest", "abdomen", "pelvis"]
need_model = pytest.mark.skipif("ct-slice-region" not in bundled_names(),
                                reason="bundled ct-slice-region not trained (scripts/train_ct_slice_region.py)")


def one_hot_probs(labels: list[int], n_classes: int = 4, p: float = 0.85) -> np.ndarray:
    probs = np.full((len(labels), n_classes), (1 - p) / (n_classes - 1), np.float32)
    probs[np.arange(len(labels)), labels] = p
    return probs


def test_decode_keeps_head_to_feet_order_and_drops_lone_slices():
    # chest, then abdomen with a stray chest slice and a stray head slice, then pelvis
    seq = [1] * 10 + [2] * 6 + [1] + [2] * 6 + [0] + [2] * 5 + [3] * 10
    labels = decode_regions(one_hot_probs(seq), CLASSES, ordered=True)
    names = [r.name for r in regions_from_labels(labels, CLASSES, None)]
    assert names == ["chest", "abdomen", "pelvis"]


def test_decode_ordered_forbids_going_back_up_the_body():
    # a long chest run *below* the abdomen: unordered decoding keeps it, ordered decoding cannot
    seq = [2] * 15 + [1] * 15
    unordered = regions_from_labels(decode_regions(one_hot_probs(seq), CLASSES, ordered=False), CLASSES, None)
    ordered = regions_from_labels(decode_regions(one_hot_probs(seq), CLASSES, ordered=True), CLASSES, None)
    assert [r.name for r in unordered] == ["abdomen", "chest"]
    assert len(ordered) == 1


def test_smoothing_removes_single_slice_spikes():
    probs = one_hot_probs([2] * 9 + [1] + [2] * 9)
    smoothed = smooth_along_z(probs, dz_mm=3.0, window_mm=15.0)
    assert smoothed.argmax(axis=1).tolist() == [2] * 19
    np.testing.assert_allclose(smoothed.sum(axis=1), 1.0, atol=1e-5)


def test_regions_carry_slices_and_z():
    z = np.array([30.0, 27.0, 24.0, 21.0])
    regions = regions_from_labels(np.array([1, 1, 2, 2]), CLASSES, z)
    assert regions == [Region("chest", 0, 1, 30.0, 27.0), Region("abdomen", 2, 3, 24.0, 21.0)]


@pytest.mark.parametrize("runs, expected", [
    ([("abdomen", 60), ("pelvis", 40)], ("ABDOMENPELVIS", "abdomen")),
    ([("chest", 5), ("abdomen", 60), ("pelvis", 35)], ("ABDOMENPELVIS", "abdomen")),  # lung bases ignored
    ([("chest", 100)], ("CHEST", "chest")),
    ([("chest", 50), ("abdomen", 50)], ("CHESTABDOMEN", "chest")),
    ([("chest", 30), ("abdomen", 40), ("pelvis", 30)], ("CHESTABDPELVIS", "whole_body")),
    ([("head", 30), ("chest", 40), ("pelvis", 30)], ("WHOLEBODY", "whole_body")),
    ([("head", 50), ("pelvis", 50)], (None, "head")),
])
def test_body_part_rule(runs, expected):
    regions, start = [], 0
    for name, n in runs:
        regions.append(Region(name, start, start + n - 1, None, None))
        start += n
    assert body_part_of(regions, start) == expected


def test_stack_preprocessing_matches_the_per_image_recipe():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(0)
    hu = gaussian_filter(rng.normal(0, 1500, size=(3, 90, 120)), sigma=(0, 2, 2)).astype(np.float32)
    hu[:, :10] = -1000
    pre = Preprocessing(size=64, keep_aspect=True, window="soft_tissue")
    got = slices_to_input(hu, (1.0, 1.0), pre)
    assert got.shape == (3, 1, 64, 64) and got.dtype == np.float32
    for i in range(3):
        want = pre.from_array(window_array(hu[i], "soft_tissue"))
        # torch's antialiased bilinear vs Pillow's float ("F") resize, which antialiases less at
        # small factors: the same picture within ~0.03 of the [0, 1] range on average
        assert np.abs(got[i] - want).mean() * pre.std < 0.04
        assert np.corrcoef(got[i].ravel(), want.ravel())[0, 1] > 0.98


def test_stack_preprocessing_uses_the_physical_aspect():
    hu = np.zeros((1, 100, 100), np.float32)  # 100 x 100 pixels of 2 mm x 1 mm: twice as tall as wide
    x = slices_to_input(hu, (2.0, 1.0), Preprocessing(size=64, keep_aspect=True, window="soft_tissue", mean=0, std=1))
    cols = np.nonzero(x[0, 0].max(axis=0) > 0)[0]
    rows = np.nonzero(x[0, 0].max(axis=1) > 0)[0]
    assert len(rows) == 64 and len(cols) == 32


def _volume(voxels: np.ndarray, modality: str | None) -> Volume:
    return Volume(voxels=voxels, spacing=(3.0, 1.0, 1.0), z_mm=np.arange(len(voxels))[::-1] * 3.0,
                  meta=Metadata(path="v", modality=modality))


def test_ct_check():
    ct = np.full((4, 16, 16), -1000.0, np.float32)
    ct[:, 4:12, 4:12] = 40
    mr_like = np.abs(ct) / 4
    check_ct(_volume(ct, None))
    check_ct(_volume(ct, "CT"))
    with pytest.raises(WrongModalityError):
        check_ct(_volume(mr_like, None))
    with pytest.raises(WrongModalityError):
        check_ct(_volume(ct, "MR"))         # the tag wins over HU-looking values
    check_ct(_volume(mr_like, None), modality="CT")  # explicit override
    with pytest.raises(WrongModalityError):
        check_ct(_volume(ct, None), modality="MR")


def test_mr_volume_is_refused():
    path = need_data("totalseg_ct", "volumes", "example_mr_sm.nii.gz")
    with pytest.raises(WrongModalityError) as info:
        profile_volume(path, model="does-not-matter")  # refused before the model is loaded
    assert info.value.code == "wrong_modality"


@need_model
def test_example_ct_runs_abdomen_then_pelvis():
    """The acceptance check of issue 5: lung bases to femoral heads -> abdomen then pelvis."""
    prof = profile_volume(need_data("totalseg_ct", "volumes", "example_ct.nii.gz"))
    names = [r.name for r in prof.regions]
    assert "abdomen" in names and "pelvis" in names
    assert names.index("abdomen") < names.index("pelvis")
    assert set(names) <= {"chest", "abdomen", "pelvis"}
    if "chest" in names:
        assert names.index("chest") < names.index("abdomen")
    # regions tile the volume superior -> inferior with decreasing z
    assert prof.regions[0].slice_start == 0 and prof.regions[-1].slice_end == len(prof.labels) - 1
    assert all(a.slice_end + 1 == b.slice_start for a, b in zip(prof.regions, prof.regions[1:]))
    assert prof.regions[0].z_start_mm > prof.regions[-1].z_end_mm
    assert prof.body_part == "abdomen" and prof.body_part_examined == "ABDOMENPELVIS"
    # the femoral-head slices at the bottom are pelvic, the kidney slices at the top abdominal
    pelvis, abdomen = prof.classes.index("pelvis"), prof.classes.index("abdomen")
    assert prof.probabilities[-10:, pelvis].mean() > 0.5
    assert prof.probabilities[:10, abdomen].mean() > 0.5


@need_model
def test_dicom_series_profile_ignores_file_order(tmp_path):
    src = need_data("totalseg_ct", "dicom_series_ct_abdomen")
    reference = profile_volume(src)
    files = sorted(p for p in src.iterdir() if p.is_file())
    random.Random(5).shuffle(files)
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    for i, f in enumerate(files):
        shutil.copy(f, shuffled / f"{random.Random(i).getrandbits(40):010x}.bin")
    again = profile_volume(shuffled)
    assert len(again.labels) == 20
    assert again.regions == reference.regions
    np.testing.assert_allclose(again.probabilities, reference.probabilities, atol=1e-5)
    np.testing.assert_allclose(again.z_mm, reference.z_mm)
    assert np.all(np.diff(again.z_mm) < 0)  # superior -> inferior
    assert [r.name for r in again.regions] == ["abdomen"]


@need_model
def test_profile_accepts_a_volume_object():
    vol = read_volume(need_data("totalseg_ct", "volumes", "example_ct_sm.nii.gz"))
    prof = profile_volume(vol, batch_size=7)
    assert prof.probabilities.shape == (30, len(prof.classes))
    np.testing.assert_allclose(prof.probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert prof.summary()["model"] == "ct-slice-region"


@need_model
def test_onnx_backend_gives_the_same_profile():
    vol = read_volume(need_data("totalseg_ct", "volumes", "example_ct_sm.nii.gz"))
    torch_prof = profile_volume(vol, backend="torch")
    onnx_prof = profile_volume(vol, backend="onnx")
    np.testing.assert_allclose(onnx_prof.probabilities, torch_prof.probabilities, atol=1e-3)
    assert onnx_prof.regions == torch_prof.regions


@need_model
def test_nifti_orientation_does_not_change_the_profile(tmp_path):
    """The same voxels stored inferior-first and left-right/anterior-posterior flipped (LPI)."""
    import nibabel as nib
    from nibabel.orientations import axcodes2ornt, ornt_transform

    src = need_data("totalseg_ct", "volumes", "example_ct_sm.nii.gz")
    img = nib.load(src)
    flip = ornt_transform(axcodes2ornt(nib.aff2axcodes(img.affine)), axcodes2ornt(("L", "P", "I")))
    flipped = img.as_reoriented(flip)
    assert nib.aff2axcodes(flipped.affine) == ("L", "P", "I")
    nib.save(flipped, tmp_path / "lpi.nii.gz")
    a, b = profile_volume(src), profile_volume(tmp_path / "lpi.nii.gz")
    np.testing.assert_allclose(b.probabilities, a.probabilities, atol=1e-4)
    np.testing.assert_allclose(b.z_mm, a.z_mm, atol=1e-3)
    assert b.regions == a.regions
