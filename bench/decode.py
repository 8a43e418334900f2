"""Decode throughput per transfer syntax on the real dicom_zoo files.

radroute = read + decode + normalise (modality LUT, VOI window, MONOCHROME1, grey) + resize to 224,
against the baseline measured in the same run on the same files: plain
``pydicom.dcmread(path).pixel_array`` (pydicom's default decoder choice, no normalising, no resize).

    nice -n 10 .venv/bin/python bench/decode.py [--repeat 3] [--size 224]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
import warnings
from collections import defaultdict
from pathlib import Path

import pydicom
from pydicom.uid import UID

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import radroute.io.dicom as radroute_dicom  # noqa: E402
from radroute.io import read_image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _time(fn, paths, repeat):
    """Best-of-``repeat`` seconds for one pass over ``paths`` (files that fail are skipped)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for path in paths:
            fn(path)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(os.environ.get("RADROUTE_DATA", REPO.parent / "shared/data")))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args()
    warnings.simplefilter("ignore")

    by_syntax: dict[str, list[Path]] = defaultdict(list)
    skipped = []
    for path in sorted((args.data / "dicom_zoo" / "files").rglob("*.dcm")):
        try:  # only files both readers can decode are timed (the 12-bit JPEG ones neither can)
            pydicom.dcmread(path, force=True).pixel_array
            read_image(path, size=args.size)
        except Exception as exc:
            skipped.append(f"{path.name} ({type(exc).__name__})")
            continue
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True)
        uid = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
        by_syntax[UID(uid).name if uid else "no file meta"].append(path)

    def radroute_read(path):
        read_image(path, size=args.size)

    def pydicom_read(path):
        pydicom.dcmread(path, force=True).pixel_array

    def radroute_no_reduce(path):
        saved = radroute_dicom.J2K_REDUCE_MIN_RATIO
        radroute_dicom.J2K_REDUCE_MIN_RATIO = float("inf")
        try:
            read_image(path, size=args.size)
        finally:
            radroute_dicom.J2K_REDUCE_MIN_RATIO = saved

    header = f"{'transfer syntax':<48} {'files':>5} {'radroute f/s':>12} {'pydicom f/s':>11} {'ratio':>6}  {'no-J2K-reduce f/s':>17}"
    print(f"decode benchmark: read+decode+normalise+resize to {args.size}, best of {args.repeat}")
    print(header)
    print("-" * len(header))
    total_r = total_p = 0.0
    count = 0
    for name, paths in sorted(by_syntax.items()):
        t_r = _time(radroute_read, paths, args.repeat)
        t_p = _time(pydicom_read, paths, args.repeat)
        extra = ""
        if "JPEG 2000" in name:
            extra = f"{len(paths) / _time(radroute_no_reduce, paths, args.repeat):17.1f}"
        total_r, total_p, count = total_r + t_r, total_p + t_p, count + len(paths)
        print(f"{name[:48]:<48} {len(paths):>5} {len(paths) / t_r:>12.1f} {len(paths) / t_p:>11.1f} {t_p / t_r:>6.2f}  {extra}")
    print("-" * len(header))
    print(f"{'all':<48} {count:>5} {count / total_r:>12.1f} {count / total_p:>11.1f} {total_p / total_r:>6.2f}")
    print(f"ratio = radroute files/s / pydicom files/s (higher is better). skipped: {', '.join(skipped) or 'none'}")


if __name__ == "__main__":
    main()
