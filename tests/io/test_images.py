"""PNG / JPEG / TIFF in 8 and 16 bit, grey and colour, and real MedPix JPEGs."""
from __future__ import annotations

import numpy as np
from PIL import Image as PILImage

from radroute.io import find_files, iter_images, read_header, read_image
from radroute.io.files import sniff_format
from tests.helpers import need_data


def _gradient(dtype, top) -> np.ndarray:
    return (np.linspace(0, 1, 60 * 80).reshape(60, 80) * top).astype(dtype)


def test_png_8_bit_maps_by_255(tmp_path):
    arr = _gradient(np.uint8, 200)
    PILImage.fromarray(arr).save(tmp_path / "a.png")
    image = read_image(tmp_path / "a.png")
    np.testing.assert_allclose(image.pixels, arr / 255.0, atol=1e-6)
    meta = image.meta
    assert (meta.format, meta.rows, meta.columns, meta.bits_stored, meta.photometric) == ("png", 60, 80, 8, "MONOCHROME2")
    assert meta.body_part == "unknown" and meta.modality is None


def test_png_16_bit_uses_the_percentile_window(tmp_path):
    arr = _gradient(np.uint16, 4000)
    PILImage.fromarray(arr).save(tmp_path / "b.png")
    image = read_image(tmp_path / "b.png")
    assert image.meta.bits_stored == 16
    assert image.pixels.min() == 0 and image.pixels.max() == 1  # stretched, unlike /65535
    assert abs(float(image.pixels[30, 40]) - 0.5) < 0.02


def test_colour_jpeg_and_tiff_pages(tmp_path):
    rgb = np.zeros((40, 50, 3), np.uint8)
    rgb[..., 1] = 255
    PILImage.fromarray(rgb).save(tmp_path / "c.jpg", quality=95)
    image = read_image(tmp_path / "c.jpg", size=25)
    assert image.pixels.shape == (20, 25) and image.meta.format == "jpeg"
    assert abs(float(image.pixels.mean()) - 0.587) < 0.02  # BT.601 luma of pure green
    pages = [PILImage.fromarray(_gradient(np.uint8, v)) for v in (50, 150, 250)]
    pages[0].save(tmp_path / "d.tif", save_all=True, append_images=pages[1:])
    assert sniff_format(tmp_path / "d.tif") == "tiff"
    images = list(iter_images(tmp_path / "d.tif"))
    assert [im.frame for im in images] == [0, 1, 2]
    assert images[0].pixels.max() < images[2].pixels.max()
    assert read_header(tmp_path / "d.tif").frames == 3


def test_real_medpix_jpegs():
    folder = need_data("medpix2")
    files = [p for p in find_files(folder) if p.suffix.lower() in (".jpg", ".jpeg", ".png")][:10]
    assert files, "medpix2 should hold JPEG images"
    for path in files:
        image = read_image(path, size=224)
        assert max(image.pixels.shape) == 224 and 0 <= image.pixels.min() and image.pixels.max() <= 1
        assert image.pixels.std() > 0.05
