"""A folder of single-frame DICOM slices -> one :class:`Volume`, ordered by patient position."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from radroute.errors import NotAVolumeError, RadrouteError
from radroute.io.dicom import decode_frame, read_dataset
from radroute.io.files import find_files, sniff_format
from radroute.io.metadata import metadata_from_dataset
from radroute.io.normalise import modality_lut
from radroute.io.types import Volume


def _slice_geometry(ds) -> tuple[np.ndarray, np.ndarray] | None:
    """(position, unit normal) in patient LPS mm, or ``None`` without usable geometry."""
    try:
        position = np.array([float(v) for v in ds.ImagePositionPatient])
        orientation = np.array([float(v) for v in ds.ImageOrientationPatient])
    except (AttributeError, TypeError, ValueError):
        return None
    normal = np.cross(orientation[:3], orientation[3:])
    norm = np.linalg.norm(normal)
    if position.shape != (3,) or norm < 1e-6:
        return None
    return position, normal / norm


def read_series(folder: str | Path) -> Volume:
    """Read the DICOM series in ``folder`` (the largest one when several are mixed).

    Slices are sorted by Image Position (Patient) projected on the slice normal, never by
    file name, and ordered superior -> inferior; ``voxels`` are modality values (HU for CT).
    """
    folder = Path(folder)
    headers = defaultdict(list)
    for path in find_files(folder):
        if sniff_format(path) != "dicom":
            continue
        try:
            ds = read_dataset(path, header_only=True)
        except RadrouteError:
            continue
        geometry = _slice_geometry(ds)
        if geometry is not None and "Rows" in ds:
            headers[str(ds.get("SeriesInstanceUID", ""))].append((path, ds, geometry))
    if not headers:
        raise NotAVolumeError("no DICOM slices with Image Position/Orientation (Patient)", folder)
    series_uid, slices = max(headers.items(), key=lambda kv: len(kv[1]))
    normal = slices[0][2][1]
    # Orient the normal towards patient superior (+z in LPS) so that sorting descending puts
    # the head first; for sagittal/coronal stacks z is ~0 and the normal's own sign is kept.
    if normal[2] < -1e-3:
        normal = -normal
    slices.sort(key=lambda item: float(item[2][0] @ normal), reverse=True)
    distances = np.array([float(item[2][0] @ normal) for item in slices])
    shapes = {(int(ds.Rows), int(ds.Columns)) for _, ds, _ in slices}
    if len(shapes) != 1:
        raise NotAVolumeError(f"slices of different sizes {sorted(shapes)}", folder)
    planes = []
    for path, _, _ in slices:
        ds = read_dataset(path)
        planes.append(modality_lut(decode_frame(ds, 0, path), ds))
    first = slices[0][1]
    dz = float(np.median(np.abs(np.diff(distances)))) if len(slices) > 1 else float(first.get("SliceThickness") or 1.0)
    dy, dx = (float(v) for v in first.get("PixelSpacing", [1.0, 1.0]))
    meta = metadata_from_dataset(first, str(folder))
    meta.frames = len(slices)
    return Volume(
        voxels=np.stack(planes).astype(np.float32, copy=False),
        spacing=(dz, dy, dx),
        z_mm=np.array([float(item[2][0][2]) for item in slices]),
        meta=meta,
        slice_paths=[str(item[0]) for item in slices],
        extra={"series_instance_uid": series_uid, "other_series": len(headers) - 1},
    )
