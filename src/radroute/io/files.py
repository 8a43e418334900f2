"""Finding input files and telling their format from their first bytes."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from radroute.errors import RadrouteError, UnreadableError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
#: Names that announce an image: in folders these are yielded even when their content is not
#: recognised, so that a broken ``.dcm`` gets reported rather than silently skipped.
IMAGE_SUFFIXES = (".dcm", ".dicom", ".ima", ".png", ".jpg", ".jpeg", ".tif", ".tiff", *NIFTI_SUFFIXES)
# Group numbers a DICOM file without preamble/file meta (ACR-NEMA style) usually starts with.
_NO_META_STARTS = (b"\x08\x00", b"\x00\x08", b"\x02\x00", b"\x00\x02", b"\x10\x00", b"\x18\x00", b"\x28\x00")


def check_file(path: Path, folder_hint: str = "is a folder, not a file") -> str | None:
    """Raise the typed error for a missing, folder or empty ``path``; else its sniffed format."""
    if not path.exists():
        raise RadrouteError("no such file", path, code="not_found")
    if path.is_dir():
        raise UnreadableError(folder_hint, path)
    if path.stat().st_size == 0:
        raise UnreadableError("empty file (0 bytes)", path)
    return sniff_format(path)


def sniff_format(path: str | Path) -> str | None:
    """The file's format: ``dicom``, ``png``, ``jpeg``, ``tiff``, ``nifti`` or ``None`` if unknown.

    DICOM is recognised by the ``DICM`` magic at byte 128, or, for files without a preamble,
    by a first tag in a typical group (0002/0008/...), as ``dcmread(force=True)`` would need.
    """
    path = Path(path)
    name = path.name.lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    try:
        with open(path, "rb") as f:
            head = f.read(132)
    except OSError as exc:
        raise UnreadableError(f"cannot open: {exc.strerror or exc}", path) from exc
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if len(head) >= 8 and head[:2] in _NO_META_STARTS:
        return "dicom"
    return None


def find_files(paths: str | Path | Iterable[str | Path], recursive: bool = True) -> Iterator[Path]:
    """Expand files and folders into candidate input files, in a stable (sorted) order.

    Files given explicitly are always yielded (a missing or unknown one then fails with a typed
    error when read); inside folders, files whose content is recognised or whose name ends in an
    image suffix (:data:`IMAGE_SUFFIXES`) are yielded; hidden files and folders are skipped.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    for item in paths:
        item = Path(item)
        if not item.is_dir():
            yield item
            continue
        walker = item.rglob("*") if recursive else item.glob("*")
        for path in sorted(walker):
            rel = path.relative_to(item).parts
            if any(part.startswith(".") for part in rel) or not path.is_file():
                continue
            if path.name.lower().endswith(IMAGE_SUFFIXES):
                yield path
                continue
            try:
                if sniff_format(path) is not None:
                    yield path
            except RadrouteError:
                continue
