"""Robustness transforms do what they say; the runner counts label changes correctly."""
from __future__ import annotations

import json

import numpy as np
import pytest

from radroute.evaluation.robustness import (burn_text, center_crop, default_perturbations,
                                            occlude_half, robustness_markdown, rotate,
                                            run_robustness)


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.uniform(0.2, 0.8, size=(64, 48)).astype(np.float32)


def test_rotation_by_90_four_times_is_identity(image):
    out = image
    for _ in range(4):
        out = rotate(out, 90)
        assert out.shape in {(64, 48), (48, 64)}
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(rotate(image, 180), image[::-1, ::-1])
    np.testing.assert_array_equal(rotate(image, 270), rotate(rotate(image, 180), 90))


def test_small_rotation_keeps_shape_and_moves_pixels():
    img = np.zeros((41, 41), np.float32)
    img[20, 30] = 1.0  # a dot right of centre
    out = rotate(img, 90)
    assert out[10, 20] == 1.0  # counter-clockwise: right -> top
    small = rotate(img, 10)
    assert small.shape == img.shape and small.min() >= 0 and small.max() <= 1
    y, x = np.unravel_index(np.argmax(small), small.shape)
    assert y <= 18 and x <= 30  # moved up by ~sin(10 deg) * 10 px: counter-clockwise, like rot90


@pytest.mark.parametrize("half", ["left", "right", "top", "bottom"])
def test_occluded_half_is_constant_and_other_half_untouched(image, half):
    out = occlude_half(image, half, value=0.0)
    h, w = image.shape
    region = {"left": np.s_[:, : w // 2], "right": np.s_[:, w // 2:],
              "top": np.s_[: h // 2], "bottom": np.s_[h // 2:]}
    other = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}[half]
    assert np.all(out[region[half]] == 0.0)
    np.testing.assert_array_equal(out[region[other]], image[region[other]])
    assert out.shape == image.shape


def test_center_crop(image):
    out = center_crop(image, 0.5)
    assert out.shape == (32, 24)
    np.testing.assert_array_equal(out, image[16:48, 12:36])
    assert center_crop(image, 0.8).shape == (51, 38)
    with pytest.raises(ValueError):
        center_crop(image, 0)


def test_burned_in_text_changes_only_its_corner():
    img = np.full((128, 128), 0.3, np.float32)
    out = burn_text(img, "PORTABLE", "top_right")
    changed = out != img
    assert changed.any() and out.max() == pytest.approx(1.0, abs=0.05)
    ys, xs = np.nonzero(changed)
    assert ys.max() < 32 and xs.min() > 40  # top rows, right side
    bottom = burn_text(img, "L", "bottom_left")
    ys, xs = np.nonzero(bottom != img)
    assert ys.min() > 96 and xs.max() < 32
    assert np.all((out >= 0) & (out <= 1))


class MeanBrightnessModel:
    """A 'classifier' of the left/right brightness difference: fooled by occlusion, not by crops."""

    def __call__(self, images):
        probs = []
        for a in images:
            w = a.shape[1]
            right = a[:, w // 2:].mean() > a[:, : w // 2].mean()
            probs.append([0.0, 1.0] if right else [1.0, 0.0])
        return {"side": np.array(probs)}


def test_run_robustness_counts_label_changes():
    rng = np.random.default_rng(1)
    images, labels = [], []
    for i in range(20):
        a = rng.uniform(0, 0.3, size=(40, 40)).astype(np.float32)
        side = i % 2
        if side:
            a[:, 20:] += 0.5
        else:
            a[:, :20] += 0.5
        images.append(np.clip(a, 0, 1))
        labels.append(side)
    res = run_robustness(MeanBrightnessModel(), images, {"side": np.array(labels)})
    json.dumps(res, allow_nan=False)
    rows = {r["name"]: r for r in res["tasks"]["side"]["perturbations"]}
    assert [p.name for p in default_perturbations()] == list(rows)
    assert res["tasks"]["side"]["baseline_accuracy"]["value"] == 1.0
    assert rows["crop_80"]["changed"]["value"] == 0.0
    assert rows["rotate_180"]["changed"]["value"] == 1.0           # left <-> right
    assert rows["rotate_180"]["accuracy"]["value"] == 0.0
    # the bright half of every odd image is the right one: occluding it flips all 10
    assert rows["occlude_right"]["changed"]["value"] == pytest.approx(0.5)
    assert rows["occlude_right"]["changed"]["ci_low"] < 0.5 < rows["occlude_right"]["changed"]["ci_high"]
    md = robustness_markdown(res)
    assert "| rotated 180 degrees counter-clockwise | rotation | 100.0 %" in md
