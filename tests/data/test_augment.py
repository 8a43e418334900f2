from __future__ import annotations

import numpy as np
import pytest
import torch

from radroute.data.augment import (
    AUGMENTATIONS, MedianFilter, PixelSpread, RandomRot90, RandomShift8, RandomTPS,
    build_augmentation, shift, tps_warp,
)
from radroute.data.preprocess import Preprocessing
from radroute.errors import InvalidConfigError
from tests.helpers import need_data


@pytest.fixture(scope="module")
def real_image() -> torch.Tensor:
    """A real OrganAMNIST CT crop at 64 px, (1, 64, 64) in [0, 1]."""
    with np.load(need_data("organamnist", "organamnist_trainval.npz")) as z:
        arr = z["val_images"][3]
    return torch.from_numpy(Preprocessing(size=64).square(arr))[None]


def test_tps_identity_with_zero_displacements(real_image):
    out = tps_warp(real_image, torch.zeros(4, 4, 2))
    assert out.shape == real_image.shape
    torch.testing.assert_close(out, real_image, atol=1e-5, rtol=0)


def test_tps_uniform_displacement_is_a_translation(real_image):
    # moving every control point by +0.125 in x samples 4 px to the right: the image shifts left
    d = torch.zeros(3, 3, 2)
    d[..., 0] = 0.125
    out = tps_warp(real_image, d)
    torch.testing.assert_close(out, shift(real_image, -4, 0), atol=1e-4, rtol=0)


def test_tps_random_deformation_moves_pixels_and_keeps_shape(real_image):
    torch.manual_seed(0)
    out = RandomTPS(grid=4, magnitude=0.08)(real_image)
    assert out.shape == real_image.shape and out.dtype == real_image.dtype
    assert (out - real_image).abs().mean() > 0.01
    # non-rigid: a local displacement changes the image near that control point only
    d = torch.zeros(5, 5, 2)
    d[2, 2] = torch.tensor([0.1, 0.1])
    local = tps_warp(real_image, d)
    diff = (local - real_image).abs()[0]
    assert diff[24:40, 24:40].mean() > 5 * diff[:8, :8].mean()
    batch = tps_warp(real_image[None].repeat(2, 1, 1, 1), d)
    torch.testing.assert_close(batch[1], local)


@pytest.mark.parametrize("name", AUGMENTATIONS)
def test_presets_keep_shape_range_and_are_seeded(name, real_image):
    aug = build_augmentation(name, 64)
    torch.manual_seed(1)
    outs = [aug(real_image) for _ in range(6)]
    torch.manual_seed(1)
    again = [aug(real_image) for _ in range(6)]
    for o, a in zip(outs, again):
        assert o.shape == (1, 64, 64) and o.dtype == torch.float32
        assert float(o.min()) >= 0.0 and float(o.max()) <= 1.0 + 1e-6
        torch.testing.assert_close(o, a)
    changed = sum(not torch.allclose(o, real_image) for o in outs)
    assert changed == 0 if name == "none" else changed >= 3


def test_unknown_preset():
    with pytest.raises(InvalidConfigError, match="unknown augmentation"):
        build_augmentation("fancy", 64)


def test_rajkomar_operations(real_image):
    torch.manual_seed(0)
    r = RandomRot90()(real_image)
    assert any(torch.equal(r, torch.rot90(real_image, k, (-2, -1))) for k in (1, 2, 3))
    s = RandomShift8(3)(real_image)
    assert any(torch.equal(s, shift(real_image, dx, dy))
               for dx in (-3, 0, 3) for dy in (-3, 0, 3) if dx or dy)
    spread = PixelSpread(1)(real_image)
    assert not torch.equal(spread, real_image)
    assert set(spread.unique().tolist()) <= set(real_image.unique().tolist())  # moved, not new values
    noisy = real_image.clone()
    noisy[0, 10, 10], noisy[0, 40, 33] = 1.0, 0.0  # salt and pepper in smooth areas
    med = MedianFilter(3)(noisy)
    assert abs(float(med[0, 10, 10] - real_image[0, 10, 10])) < 0.1
    assert abs(float(med[0, 40, 33] - real_image[0, 40, 33])) < 0.1
    flat = torch.full((1, 8, 8), 0.3)
    torch.testing.assert_close(MedianFilter(3)(flat), flat)


def test_shift_is_exact():
    x = torch.arange(16.0).reshape(1, 4, 4)
    assert shift(x, 1, 0)[0, 0].tolist() == [0, 0, 1, 2]
    assert shift(x, 0, -1)[0, :, 0].tolist() == [4, 8, 12, 0]
