"""NIfTI volumes (nibabel), reoriented to axial slices ordered superior -> inferior."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from radroute.errors import NotAVolumeError, TooLargeError, UnreadableError
from radroute.io.types import Metadata, Volume


def _load(path: Path):
    import nibabel as nib

    try:
        return nib.load(str(path))
    except FileNotFoundError as exc:
        raise UnreadableError("no such file", path) from exc
    except Exception as exc:
        raise UnreadableError(f"cannot read NIfTI ({type(exc).__name__}: {exc})", path) from exc


def nifti_metadata(path: str | Path) -> Metadata:
    """Header-only metadata: rows/columns of an axial slice, frames = number of slices."""
    path = Path(path)
    img = _load(path)
    shape = img.shape
    if len(shape) < 3:
        raise NotAVolumeError(f"NIfTI has {len(shape)} dimensions, expected 3", path)
    import nibabel as nib

    codes = nib.aff2axcodes(img.affine)
    axis = {c: i for i, c in enumerate(codes)}
    col_axis = axis.get("R", axis.get("L", 0))
    row_axis = axis.get("A", axis.get("P", 1))
    slice_axis = axis.get("S", axis.get("I", 2))
    zooms = img.header.get_zooms()
    return Metadata(path=str(path), rows=int(shape[row_axis]), columns=int(shape[col_axis]),
                    frames=int(shape[slice_axis]), pixel_spacing=(float(zooms[row_axis]), float(zooms[col_axis])),
                    format="nifti")


def read_nifti(path: str | Path, max_bytes: int | None = None) -> Volume:
    """Read a 3-D NIfTI into a :class:`Volume` (Z, Y, X) in stored units (HU for CT).

    The image is brought to RAS+ with ``nibabel.as_closest_canonical`` and then flipped so that
    slice 0 is the most superior, row 0 the most anterior and column 0 the patient's right
    (the radiological display convention DICOM axial images use).
    """
    import nibabel as nib

    from radroute.io.dicom import MAX_DECODED_BYTES

    path = Path(path)
    img = _load(path)
    if len(img.shape) == 4 and img.shape[3] == 1:
        img = img.slicer[..., 0]
    if len(img.shape) != 3:
        raise NotAVolumeError(f"NIfTI shape {img.shape} is not a 3-D volume", path)
    limit = MAX_DECODED_BYTES if max_bytes is None else max_bytes
    if int(np.prod(img.shape)) * 4 > limit:
        raise TooLargeError(f"volume {img.shape} over the {limit / 1e6:.0f} MB guard", path)
    canonical = nib.as_closest_canonical(img)
    try:
        data = np.asarray(canonical.get_fdata(dtype=np.float32))
    except Exception as exc:
        raise UnreadableError(f"cannot read NIfTI voxels ({type(exc).__name__}: {exc})", path) from exc
    voxels = np.ascontiguousarray(data.transpose(2, 1, 0)[::-1, ::-1, ::-1])  # (S, A, R) flipped
    dx, dy, dz = (float(z) for z in canonical.header.get_zooms()[:3])
    n_slices = voxels.shape[0]
    k = np.arange(n_slices)[::-1]
    z_mm = (canonical.affine[2, 2] * k + canonical.affine[2, 3]).astype(np.float64)
    meta = Metadata(path=str(path), rows=voxels.shape[1], columns=voxels.shape[2], frames=n_slices,
                    pixel_spacing=(dy, dx), format="nifti")
    return Volume(voxels=voxels, spacing=(dz, dy, dx), z_mm=z_mm, meta=meta, slice_paths=None,
                  extra={"affine_ras": canonical.affine.tolist()})
