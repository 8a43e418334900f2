"""Broken inputs built here: each gives its typed error, and the rest of a batch is still read."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate

from radroute.errors import RadrouteError
from radroute.io import find_files, iter_images, read_header, read_image

CT_SMALL = Path(get_testdata_file("CT_small.dcm"))
J2K = Path(get_testdata_file("MR_small_jp2klossless.dcm"))


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _modified(src: Path, dst: Path, **changes) -> Path:
    ds = pydicom.dcmread(src)
    for keyword, value in changes.items():
        if keyword == "TransferSyntaxUID":
            ds.file_meta.TransferSyntaxUID = value
        else:
            setattr(ds, keyword, value)
    ds.save_as(dst, enforce_file_format=False)
    return dst


def broken_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, expected error code)."""
    raw = CT_SMALL.read_bytes()
    pixels = pydicom.dcmread(CT_SMALL).PixelData
    j2k = J2K.read_bytes()
    start = j2k.index(b"\xff\x4f\xff\x51") + 4  # the JPEG 2000 image header (SIZ) body
    garbled_j2k = j2k[:start] + bytes(64) + j2k[start + 64:]  # same lengths, undecodable stream
    return {
        "zero_bytes": (_write(folder / "empty.dcm", b""), "unreadable"),
        "random_bytes": (_write(folder / "random.dcm", np.random.default_rng(1).bytes(4096)), "not_dicom"),
        "text_file": (_write(folder / "notes.dcm", b"hello, this is not an image\n" * 20), "not_dicom"),
        "truncated_header": (_write(folder / "cut_header.dcm", raw[:500]), "unreadable"),
        "truncated_pixels": (_write(folder / "cut_pixels.dcm", raw[:-4000]), "corrupt_pixel_data"),
        "short_pixel_data": (_modified(CT_SMALL, folder / "short.dcm", PixelData=pixels[: len(pixels) // 2]),
                             "corrupt_pixel_data"),
        "huge_declared": (_modified(CT_SMALL, folder / "huge.dcm", Rows=65535, Columns=65535, NumberOfFrames=1000),
                          "too_large"),
        "garbled_j2k": (_write(folder / "garbled_j2k.dcm", garbled_j2k), "corrupt_pixel_data"),
        "unknown_syntax": (_modified(CT_SMALL, folder / "mpeg.dcm", TransferSyntaxUID="1.2.840.10008.1.2.4.100",
                                     PixelData=encapsulate([pixels])),
                           "unsupported_transfer_syntax"),
        "no_pixel_data": (Path(shutil.copy(get_testdata_file("rtplan.dcm"), folder / "rtplan.dcm")), "no_pixel_data"),
        "truncated_png": (_write(folder / "cut.png", _png_bytes()[:200]), "corrupt_pixel_data"),
    }


def _png_bytes() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture()
def broken(tmp_path) -> dict[str, tuple[Path, str]]:
    return broken_files(tmp_path)


def test_each_broken_file_gives_its_typed_error(broken):
    for name, (path, code) in broken.items():
        with pytest.raises(RadrouteError) as info:
            read_image(path, size=64)
        assert info.value.code == code, f"{name}: {info.value}"
        assert info.value.path == str(path)
        assert "\n" not in info.value.message and info.value.message
        assert info.value.to_dict() == {"type": code, "message": info.value.message}


def test_header_is_still_readable_when_only_pixels_are_bad(broken):
    for name in ("short_pixel_data", "huge_declared", "unknown_syntax", "truncated_pixels"):
        meta = read_header(broken[name][0])
        assert meta.modality == "CT" and meta.sop_instance_uid


def test_missing_file_is_not_found(tmp_path):
    with pytest.raises(RadrouteError) as info:
        read_image(tmp_path / "nope.dcm")
    assert info.value.code == "not_found"


def test_memory_guard_is_configurable():
    with pytest.raises(RadrouteError) as info:
        read_image(CT_SMALL, max_bytes=1000)
    assert info.value.code == "too_large"
    assert read_image(CT_SMALL, max_bytes=10**6).pixels.shape == (128, 128)


def test_a_batch_goes_on_past_bad_files(broken, tmp_path):
    for i in range(3):
        shutil.copy(CT_SMALL, tmp_path / f"good_{i}.dcm")
    good, errors = [], {}
    for path in find_files(tmp_path):
        try:
            good.extend(image.meta.path for image in iter_images(path, size=32))
        except RadrouteError as exc:
            errors[path.name] = exc.code
    assert sorted(Path(p).name for p in good) == ["good_0.dcm", "good_1.dcm", "good_2.dcm"]
    assert errors == {p.name: code for p, code in broken.values()}


def test_find_files_skips_hidden_and_unknown(tmp_path):
    shutil.copy(CT_SMALL, tmp_path / "a.dcm")
    (tmp_path / "sub").mkdir()
    shutil.copy(CT_SMALL, tmp_path / "sub" / "IM0001")  # no extension: sniffed by content
    shutil.copy(CT_SMALL, tmp_path / ".hidden.dcm")
    (tmp_path / "labels.csv").write_text("a,b\n")
    names = [p.relative_to(tmp_path).as_posix() for p in find_files(tmp_path)]
    assert names == ["a.dcm", "sub/IM0001"]
    assert [p.name for p in find_files(tmp_path, recursive=False)] == ["a.dcm"]
    assert list(find_files([tmp_path / "labels.csv"])) == [tmp_path / "labels.csv"]  # explicit: kept
    assert os.fspath(next(find_files(str(tmp_path)))).endswith("a.dcm")
