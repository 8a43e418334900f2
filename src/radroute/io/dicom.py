"""Reading DICOM files: header-only reads, guarded decoding with an explicit decoder per syntax."""
from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.dataelem import RawDataElement
from pydicom.encaps import get_frame
from pydicom.errors import InvalidDicomError
from pydicom.pixels import pixel_array
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import (
    UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian, JPEG2000,
    JPEG2000Lossless, JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLosslessSV1, JPEGLossless,
    JPEGLSLossless, JPEGLSNearLossless, RLELossless,
)

from radroute.errors import (
    CorruptPixelDataError, NoPixelDataError, NotDicomError, TooLargeError,
    UnreadableError, UnsupportedTransferSyntaxError,
)
from radroute.io.files import check_file

#: Memory guard: the most bytes a decoded pixel array may take (``RADROUTE_MAX_DECODED_BYTES``).
MAX_DECODED_BYTES: int = int(os.environ.get("RADROUTE_MAX_DECODED_BYTES", 4 * 1024**3))

# The fastest decoder first, then fall-backs (measured: pyjpegls beats gdcm 1.5x on JPEG-LS;
# gdcm is fastest at full-size lossless JPEG 2000 and the only one for JPEG lossless;
# pylibjpeg-rle is ~3x pydicom's numpy RLE; Pillow (libjpeg-turbo) beats gdcm on baseline JPEG).
DECODER_ORDER: dict[str, tuple[str, ...]] = {
    JPEGLSLossless: ("pyjpegls", "gdcm"),
    JPEGLSNearLossless: ("pyjpegls", "gdcm"),
    JPEG2000Lossless: ("gdcm", "pylibjpeg", "pillow"),
    JPEG2000: ("pylibjpeg", "gdcm", "pillow"),  # measured: openjpeg beats gdcm on lossy J2K
    JPEGLossless: ("gdcm",),
    JPEGLosslessSV1: ("gdcm",),
    JPEGBaseline8Bit: ("pillow", "gdcm"),
    JPEGExtended12Bit: ("pillow", "gdcm"),
    RLELossless: ("pylibjpeg", "pydicom"),
}
#: Use reduced-resolution JPEG 2000 decoding when the image is at least this many times the target.
J2K_REDUCE_MIN_RATIO = 2.0


def _check_file(path: Path) -> None:
    if check_file(path) != "dicom":
        raise NotDicomError("no DICM magic and no DICOM tags at the start of the file", path)


def _truncated_last_element(ds: Dataset) -> int | None:
    """Tag of the last element if its value is shorter than its declared length (a cut file)."""
    if len(ds) == 0:
        return None
    tag = max(ds.keys())
    elem = ds.get_item(tag)
    if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
        if elem.length not in (0xFFFFFFFF,) and len(elem.value) < elem.length:
            return tag
    return None


def read_dataset(path: str | Path, *, header_only: bool = False) -> Dataset:
    """``dcmread`` with ``force`` for files without file meta, and typed errors.

    A file without file meta gets its Transfer Syntax set from the encoding pydicom detected;
    ``ds.radroute_ts_in_file`` tells whether the file itself declared one.
    """
    path = Path(path)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=header_only)
    except InvalidDicomError as exc:
        raise NotDicomError(str(exc), path) from exc
    except Exception as exc:  # pydicom raises many kinds on a damaged header
        raise UnreadableError(f"cannot parse the DICOM header ({type(exc).__name__}: {exc})", path) from exc
    if len(ds) == 0:
        if getattr(ds, "preamble", None) is not None:
            raise UnreadableError("DICM file without readable data elements", path)
        raise NotDicomError("no DICOM data elements found", path)
    cut = _truncated_last_element(ds)
    if cut is not None:
        if cut == 0x7FE00010:
            raise CorruptPixelDataError("file truncated inside Pixel Data", path)
        raise UnreadableError(f"file truncated inside element {pydicom.tag.Tag(cut)}", path)
    meta = getattr(ds, "file_meta", None)
    ts_in_file = bool(meta is not None and meta.get("TransferSyntaxUID"))
    if not ts_in_file:
        implicit, little = ds.original_encoding
        if meta is None:
            ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
    ds.radroute_ts_in_file = ts_in_file  # plain attribute, not a DICOM element
    return ds


def decoded_nbytes(ds: Dataset) -> int:
    """Bytes the decoded pixel array of ``ds`` takes (all frames)."""
    def number(keyword: str, default: int) -> int:
        try:
            return int(ds.get(keyword) or default)
        except (TypeError, ValueError):
            return default

    bits = number("BitsAllocated", 16)
    return (number("Rows", 0) * number("Columns", 0) * number("NumberOfFrames", 1)
            * number("SamplesPerPixel", 1) * max(1, (bits + 7) // 8))


def check_size(ds: Dataset, path: str | Path | None = None, max_bytes: int | None = None) -> None:
    """Raise :class:`TooLargeError` before decoding when the declared size exceeds the guard."""
    limit = MAX_DECODED_BYTES if max_bytes is None else max_bytes
    size = decoded_nbytes(ds)
    if size > limit:
        raise TooLargeError(
            f"declared {ds.get('Rows')}x{ds.get('Columns')}x{ds.get('NumberOfFrames', 1)} pixels "
            f"need {size / 1e6:.0f} MB, over the {limit / 1e6:.0f} MB guard", path)


def number_of_frames(ds: Dataset) -> int:
    try:
        return max(1, int(ds.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def j2k_reduce_level(ds: Dataset, size: int | None) -> int:
    """How many resolution halvings the JPEG 2000 decode may skip and still exceed ``size``."""
    if size is None or ds.file_meta.TransferSyntaxUID not in (JPEG2000, JPEG2000Lossless):
        return 0
    longest = max(int(ds.Rows), int(ds.Columns))
    level = 0
    while longest / (2 ** (level + 1)) >= size and longest / size >= J2K_REDUCE_MIN_RATIO:
        level += 1
    return min(level, 5)


def _decode_j2k_reduced(ds: Dataset, frame: int, level: int) -> np.ndarray:
    """Decode one JPEG 2000 frame at 1/2**level resolution with OpenJPEG (through Pillow)."""
    from PIL import Image as PILImage

    codestream = get_frame(ds.PixelData, frame, number_of_frames=number_of_frames(ds))
    siz = codestream.find(b"\xff\x51")  # SIZ marker; Ssiz of component 0 is 40 bytes on
    ssiz = codestream[siz + 40]
    precision, signed = (ssiz & 0x7F) + 1, bool(ssiz & 0x80)
    if signed != (int(ds.get("PixelRepresentation", 0)) == 1):
        # header/codestream sign mismatch: the wrap-around cannot be undone after low-pass
        raise ValueError("J2K signedness differs from Pixel Representation")
    with PILImage.open(io.BytesIO(codestream)) as img:
        img.reduce = level
        img.load()
        arr = np.asarray(img)
    if arr.ndim == 3:
        return arr
    # Pillow scales samples up to 16 bits and offsets signed data to unsigned: undo both.
    values = arr.astype(np.int32)
    if arr.dtype == np.uint16 and precision < 16:
        values >>= 16 - precision
    if signed:
        values -= 1 << (precision - 1)
    # the low-pass image overshoots at sharp edges: keep it in the stored range
    low = -(1 << (precision - 1)) if signed else 0
    return np.clip(values, low, low + (1 << precision) - 1)


def _plugins_for(ts: UID) -> tuple[str, ...]:
    try:
        available = get_decoder(ts).available_plugins
    except NotImplementedError:
        return ()
    preferred = [p for p in DECODER_ORDER.get(ts, ()) if p in available]
    return tuple(preferred + [p for p in available if p not in preferred]) or ("",)


def decode_frame(ds: Dataset, frame: int | None, path: str | Path | None = None,
                 *, reduce: int = 0) -> np.ndarray:
    """Decode one frame (or all, ``frame=None``) with the preferred plugin, falling back on failure.

    Colour data comes back RGB. Raises typed errors: unsupported syntax, corrupt data.
    """
    if not any(k in ds for k in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        raise NoPixelDataError("the file has no Pixel Data element", path)
    ts = UID(ds.file_meta.TransferSyntaxUID)
    for level in range(reduce if frame is not None else 0, 0, -1):
        try:  # some codestreams refuse deep reductions: try shallower ones, then full size
            return _decode_j2k_reduced(ds, frame, level)
        except Exception:
            continue
    plugins = _plugins_for(ts)
    if not plugins:
        raise UnsupportedTransferSyntaxError(f"no installed decoder for {ts.name} ({ts})", path)
    failures = []
    for plugin in plugins:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return pixel_array(ds, index=frame, decoding_plugin=plugin)
        except Exception as exc:
            reason = " ".join(str(exc).split())
            reason = reason.split("available plugins:")[-1].strip()  # pydicom's wrapper text
            failures.append(reason if reason.startswith(f"{plugin}:") else f"{plugin or 'pydicom'}: {reason}")
    reason = "; ".join(failures)
    if re.search(r"not support|no (pixel data )?(decoders|plugins)|missing (the )?(required )?dependenc", reason, re.I):
        raise UnsupportedTransferSyntaxError(f"{ts.name} ({ts}): {reason}"[:400], path)
    raise CorruptPixelDataError(f"{ts.name}: {reason}"[:400], path)


def ts_short_name(uid: str | None) -> str | None:
    """A short readable name of a Transfer Syntax UID (``JPEG 2000 Lossless``), ``None`` for ``None``."""
    if not uid:
        return None
    name = UID(uid).name
    for long, short in (("Image Compression", ""), (" (Lossless Only)", " Lossless"),
                        ("Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1])", "SV1"),
                        (" (Process 2 and 4)", ""), (" (Process 1)", ""), (" Image Compression", "")):
        name = name.replace(long, short)
    return " ".join(name.split()) or uid
