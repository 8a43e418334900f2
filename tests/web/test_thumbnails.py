"""Thumbnails decoded in isolated workers: the reader's windowing, cached; a bad file is its own
error, and a decoder that runs too long or dies costs its worker, never the service."""
from __future__ import annotations

import io
import os
import signal
import time

import numpy as np
import pytest
from PIL import Image

from radroute.io import read_image
from radroute.web.thumbnails import ThumbnailError, ThumbnailRenderer
from tests.helpers import need_data


@pytest.fixture()
def renderer(tmp_path):
    r = ThumbnailRenderer(tmp_path / "cache", size=128, timeout=5.0)
    yield r
    r.close()


def test_the_readers_windowing_and_cache(renderer):
    src = str(need_data("dicom_zoo", "files", "fo-dicom", "CR-MONO1-10-chest.dcm"))  # MONOCHROME1
    png = Image.open(io.BytesIO(renderer.png(src)))
    expected = read_image(src, frame=0, size=128, window="auto").pixels
    assert png.size == (expected.shape[1], expected.shape[0]) and max(png.size) == 128
    assert np.abs(np.asarray(png, float) - expected * 255).max() <= 1.0
    cached = renderer.cache_path(src)
    assert cached.is_file() and cached.read_bytes() == renderer.png(src)


def test_an_undecodable_file_is_its_own_error(renderer, tmp_path):
    bad = tmp_path / "notes.dcm"
    bad.write_text("not an image")
    with pytest.raises(ThumbnailError) as err:
        renderer.png(str(bad))
    assert err.value.error["type"] == "not_dicom"
    bad.unlink()
    with pytest.raises(ThumbnailError):  # remembered: not decoded again
        renderer.png(str(bad))
    with pytest.raises(ThumbnailError) as err:
        renderer.png(str(tmp_path / "gone.dcm"))
    assert err.value.error["type"] == "not_found"


def test_a_slow_or_dead_decoder_costs_only_its_worker(tmp_path):
    big = str(need_data("dicom_zoo", "files", "wg04", "RG1_J2KI.dcm"))  # 1955 x 1841 JPEG 2000
    good = str(need_data("dicom_zoo", "files", "pydicom", "CT_small.dcm"))
    renderer = ThumbnailRenderer(tmp_path / "cache", size=64, timeout=0.001)
    try:
        with pytest.raises(ThumbnailError) as err:
            renderer.png(big)  # no decoder reads a JPEG 2000 file in a millisecond: stopped
        assert err.value.error["type"] == "decoder_timeout" and renderer.pool.timeouts == 1
        renderer.timeout = 60.0
        assert renderer.png(good)[:8] == b"\x89PNG\r\n\x1a\n"  # a new worker took over
        for pid in renderer.pool.pids:
            os.kill(pid, signal.SIGKILL)  # an idle worker dies ...
        time.sleep(0.5)  # ... and its supervisor notices (a task sent in between fails "crashed")
        renderer.cache_path(good).unlink()
        assert renderer.png(good)[:8] == b"\x89PNG\r\n\x1a\n"
        with pytest.raises(ThumbnailError):
            renderer.png(big)  # its failure is remembered, not decoded again
    finally:
        renderer.close()
