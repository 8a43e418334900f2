"""The public reading functions: any supported file -> :class:`Metadata` / :class:`Image` / :class:`Volume`."""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from numbers import Integral
from pathlib import Path

from radroute.errors import NotAVolumeError, NotDicomError, RadrouteError, UnreadableError
from radroute.io.dicom import check_size, decode_frame, j2k_reduce_level, number_of_frames, read_dataset
from radroute.io.files import NIFTI_SUFFIXES, check_file
from radroute.io.images import image_metadata, iter_image_file
from radroute.io.metadata import metadata_from_dataset
from radroute.io.nifti import nifti_metadata, read_nifti
from radroute.io.normalise import file_voi, normalise_frame
from radroute.io.resize import resize
from radroute.io.series import read_series
from radroute.io.types import Image, Metadata, Volume
from radroute.io.windowing import WINDOW_PRESETS, check_window, percentile_range, scale_range, window_array

Frames = str | int | Iterable[int]


def _format(path: Path) -> str:
    fmt = check_file(path, "is a folder; use read_volume for a DICOM series")
    if fmt is None:
        raise NotDicomError("not DICOM, PNG, JPEG, TIFF or NIfTI", path)
    return fmt


def _dicom_metadata(ds, path: Path) -> Metadata:
    meta = metadata_from_dataset(ds, str(path))
    if not getattr(ds, "radroute_ts_in_file", True):
        meta.transfer_syntax = None  # the file declares none; the one used to read it is a guess
    return meta


def read_header(path: str | Path) -> Metadata:
    """Tags only (DICOM stops before Pixel Data; images and NIfTI read their header only)."""
    path = Path(path)
    fmt = _format(path)
    try:
        if fmt == "dicom":
            ds = read_dataset(path, header_only=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # pydicom value validation
                return _dicom_metadata(ds, path)
        if fmt == "nifti":
            return nifti_metadata(path)
        return image_metadata(path)
    except RadrouteError:
        raise
    except Exception as exc:  # a malformed tag value: still a typed error
        raise UnreadableError(f"{type(exc).__name__}: {exc}", path) from exc


class FrameIndexError(IndexError):
    """A requested frame index is out of range (a caller error, not a file error)."""


def _frame_list(frames: Frames, count: int) -> list[int]:
    if frames == "all" or frames is None:
        return list(range(count))
    wanted = [int(frames)] if isinstance(frames, Integral) else [int(f) for f in frames]
    for index in wanted:
        if not 0 <= index < count:
            raise FrameIndexError(f"frame {index} out of range (the file has {count})")
    return wanted


def _iter_dicom(path: Path, frames: Frames, size, keep_aspect, window, max_bytes) -> Iterator[Image]:
    ds = read_dataset(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        meta = _dicom_metadata(ds, path)
    check_size(ds, path, max_bytes)
    count = number_of_frames(ds)
    reduce = j2k_reduce_level(ds, size)
    if reduce and "PixelPaddingValue" in ds and (window == "percentile" or file_voi(ds, 0) is None):
        reduce = 0  # low-pass ringing would blur padding into the percentile window
    for index in _frame_list(frames, count):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            raw = decode_frame(ds, index, path, reduce=reduce)
            if count > 1 and raw.ndim == (4 if int(ds.get("SamplesPerPixel", 1)) > 1 else 3):
                raw = raw[0]  # some plugins ignore ``index`` for a single-fragment stream
            pixels = normalise_frame(raw, ds, index, size=size, keep_aspect=keep_aspect, window=window)
        yield Image(pixels=pixels, meta=meta, frame=index if count > 1 else None)


def _iter_nifti(path: Path, frames: Frames, size, keep_aspect, window, max_bytes) -> Iterator[Image]:
    volume = read_nifti(path, max_bytes)
    hu_like = float(volume.voxels.min()) < -500  # CT in HU: presets apply
    if window in WINDOW_PRESETS and hu_like:
        windowed = lambda s: window_array(s, window)  # noqa: E731
    else:
        low_high = percentile_range(volume.voxels)  # one window for the whole volume
        windowed = lambda s: scale_range(s, *low_high)  # noqa: E731
    for index in _frame_list(frames, volume.voxels.shape[0]):
        pixels = windowed(resize(volume.voxels[index], size, keep_aspect))
        yield Image(pixels=pixels, meta=volume.meta, frame=index)


def iter_images(path: str | Path, *, frames: Frames = "all", size: int | None = None,
                keep_aspect: bool = True, window: str = "auto",
                max_bytes: int | None = None) -> Iterator[Image]:
    """Yield every wanted frame (DICOM multi-frame, TIFF page, NIfTI axial slice) as an :class:`Image`.

    ``frames`` is ``"all"``, one index or a list of indices. ``size``/``keep_aspect``/``window``
    as in :func:`read_image`. Raises :class:`~radroute.errors.RadrouteError` subclasses only.
    """
    check_window(window)
    path = Path(path)
    fmt = _format(path)
    try:
        if fmt == "dicom":
            yield from _iter_dicom(path, frames, size, keep_aspect, window, max_bytes)
        elif fmt == "nifti":
            yield from _iter_nifti(path, frames, size, keep_aspect, window, max_bytes)
        else:
            for index, pixels, meta in iter_image_file(path, frames=frames, size=size,
                                                       keep_aspect=keep_aspect, window=window):
                yield Image(pixels=pixels, meta=meta, frame=index)
    except (RadrouteError, FrameIndexError):
        raise
    except MemoryError as exc:
        raise RadrouteError("out of memory while decoding", path, code="too_large") from exc
    except Exception as exc:  # never let a library exception escape untyped
        raise UnreadableError(f"{type(exc).__name__}: {exc}", path) from exc


def read_image(path: str | Path, *, frame: int | None = None, size: int | None = None,
               keep_aspect: bool = True, window: str = "auto", max_bytes: int | None = None) -> Image:
    """Read one image as float32 (H, W) in [0, 1].

    ``frame``: the frame of a multi-frame file (default: the first; the middle slice of a NIfTI).
    ``size``: resize (before windowing) so the longer side is ``size`` (``keep_aspect``) or to
    ``size x size``. ``window``: ``auto``, ``percentile`` or a CT preset (see
    :data:`~radroute.io.windowing.WINDOW_PRESETS`). ``max_bytes`` overrides the memory guard.
    """
    path = Path(path)
    if frame is None:
        nifti = path.name.lower().endswith(NIFTI_SUFFIXES) and path.is_file()
        frame = (read_header(path).frames or 1) // 2 if nifti else 0
    for image in iter_images(path, frames=frame, size=size, keep_aspect=keep_aspect,
                             window=window, max_bytes=max_bytes):
        return image
    raise UnreadableError("no image in file", path)


def read_volume(path_or_dir: str | Path, *, max_bytes: int | None = None) -> Volume:
    """A NIfTI file or a DICOM series folder as a :class:`Volume` (superior -> inferior)."""
    path = Path(path_or_dir)
    if path.is_dir():
        return read_series(path)
    fmt = _format(path)
    if fmt == "nifti":
        return read_nifti(path, max_bytes)
    raise NotAVolumeError(f"a {fmt} file is not a volume (give a NIfTI file or a series folder)", path)


__all__ = ["read_header", "read_image", "iter_images", "read_volume"]
