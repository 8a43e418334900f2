"""``radroute examples``: print paths of example images that ship with a dependency (pydicom)."""
from __future__ import annotations

import typer


#: pydicom's bundled test files used as out-of-the-box examples: a CT, an MR, a JPEG 2000 CT,
#: an ultrasound-like palette image, and an RT plan that has no pixel data (shows a typed error).
EXAMPLE_FILES = ["CT_small.dcm", "MR_small.dcm", "JPEG2000.dcm", "MR_small_jpeg_ls_lossless.dcm", "rtplan.dcm"]


def example_paths() -> list[str]:
    """Absolute paths of the example files (pydicom ships them; no network needed)."""
    from pydicom.data import get_testdata_file

    paths = []
    for name in EXAMPLE_FILES:
        path = get_testdata_file(name)
        if path:
            paths.append(str(path))
    return paths


def examples() -> None:
    """Print the paths of example DICOM files bundled with pydicom, one per line."""
    for path in example_paths():
        typer.echo(path)
