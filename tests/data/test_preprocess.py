from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from radroute.data.preprocess import Preprocessing
from radroute.errors import InvalidConfigError
from tests.helpers import need_data


def test_defaults_and_round_trip():
    p = Preprocessing()
    assert (p.size, p.keep_aspect, p.window, p.mean, p.std) == (224, True, "auto", 0.5, 0.25)
    q = Preprocessing(size=64, keep_aspect=False, window="lung", mean=0.4, std=0.3)
    d = json.loads(json.dumps(q.to_dict()))
    assert Preprocessing.from_dict(d) == q
    assert Preprocessing.from_dict({"size": "32", "unknown": 1}) == Preprocessing(size=32)
    with pytest.raises(InvalidConfigError):
        Preprocessing(size=0)
    with pytest.raises(InvalidConfigError):
        Preprocessing.from_dict({"std": 0})
    with pytest.raises(Exception):
        q.size = 3  # frozen


def test_from_array_shape_dtype_and_normalisation():
    p = Preprocessing(size=32)
    x = p.from_array(np.full((50, 50), 0.75, np.float32))
    assert x.shape == (1, 32, 32) and x.dtype == np.float32
    np.testing.assert_allclose(x, (0.75 - 0.5) / 0.25, atol=1e-5)


def test_keep_aspect_pads_centred_and_stretch_fills():
    wide = np.ones((20, 40), np.float32)
    sq = Preprocessing(size=40, keep_aspect=True).square(wide)
    assert sq.shape == (40, 40)
    assert sq[:10].max() == 0 and sq[30:].max() == 0      # padding above and below
    np.testing.assert_allclose(sq[10:30], 1.0, atol=1e-6)  # image centred
    stretched = Preprocessing(size=40, keep_aspect=False).square(wide)
    np.testing.assert_allclose(stretched, 1.0, atol=1e-6)
    tall = Preprocessing(size=40).square(np.ones((40, 20), np.float32))
    assert tall[:, :10].max() == 0 and tall[:, 30:].max() == 0


def test_downsampling_is_antialiased_and_deterministic():
    # a 1-pixel checkerboard averages to grey with antialiasing; naive subsampling gives 0 or 1
    board = (np.indices((256, 256)).sum(0) % 2).astype(np.float32)
    p = Preprocessing(size=32)
    sq = p.square(board)
    assert abs(sq.mean() - 0.5) < 0.02 and sq.std() < 0.05
    np.testing.assert_array_equal(p.from_array(board), p.from_array(board))
    assert 0.0 <= sq.min() and sq.max() <= 1.0


def test_uint8_and_channel_inputs():
    p = Preprocessing(size=16)
    a = np.full((16, 16), 255, np.uint8)
    np.testing.assert_allclose(p.square(a), 1.0)
    np.testing.assert_allclose(p.from_array(a[None].astype(np.float32) / 255), p.from_array(a))
    with pytest.raises(ValueError):
        p.from_array(np.zeros((3, 4, 4), np.float32))


def test_input_is_not_modified():
    a = np.random.default_rng(0).random((32, 32), dtype=np.float32)
    before = a.copy()
    p = Preprocessing(size=32, keep_aspect=False)
    out = p.square(a)
    out[:] = 0
    np.testing.assert_array_equal(a, before)


def test_real_image_matches_pillow_reference():
    path = need_data("medpix2", "images")
    first = sorted(Path(path).glob("*.jpg"))[0]
    arr = np.asarray(PILImage.open(first).convert("L"), np.float32) / 255
    p = Preprocessing(size=64)
    x = p.from_array(arr)
    h, w = arr.shape
    nh, nw = round(h * 64 / max(h, w)), round(w * 64 / max(h, w))
    ref = np.asarray(PILImage.fromarray(arr).resize((nw, nh), PILImage.Resampling.BOX))
    top, left = (64 - nh) // 2, (64 - nw) // 2
    np.testing.assert_allclose(x[0, top:top + nh, left:left + nw] * 0.25 + 0.5, np.clip(ref, 0, 1), atol=1e-5)


def test_same_resize_as_the_reading_layer():
    resize_mod = pytest.importorskip("radroute.io.resize")
    rng = np.random.default_rng(1)
    for shape in [(300, 200), (17, 40), (64, 64)]:
        a = rng.random(shape, dtype=np.float32)
        p = Preprocessing(size=48)
        io_small = resize_mod.resize(a, 48, keep_aspect=True)
        # padding the reading layer's resized image gives exactly what from_array computes
        np.testing.assert_array_equal(p.square(io_small), p.square(a))


def test_load_uses_radroute_io(tmp_path):
    io = pytest.importorskip("radroute.io")
    if not hasattr(io, "read_image"):
        pytest.skip("radroute.io.read_image not written yet")
    img = (np.linspace(0, 255, 60 * 30).reshape(60, 30)).astype(np.uint8)
    f = tmp_path / "a.png"
    PILImage.fromarray(img).save(f)
    p = Preprocessing(size=32)
    x = p.load(f)
    assert x.shape == (1, 32, 32) and x.dtype == np.float32
    # keep_aspect pads the narrow side: left/right columns are background (normalised 0)
    np.testing.assert_allclose(x[0, :, 0], -2.0, atol=1e-5)
    direct = p.from_array(img.astype(np.float32) / 255)
    assert np.abs(x - direct).mean() < 0.05
