"""Epoch read time: decoding files every epoch (baseline) vs the preprocessing cache.

    nice -n 10 .venv/bin/python bench/data_cache.py [--size 224] [--n 400] [--workers 2]

Sources: MedPix 2.0 JPEGs and the TotalSegmentator CT series (JPEG 2000 lossless DICOM) from
$RADROUTE_DATA. Prints images/s for one pass decoding every file (what training without a cache
does each epoch), the one-off cache build, and one pass over the cached dataset.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from radroute.data.cache import build_cache  # noqa: E402
from radroute.data.dataset import ManifestDataset  # noqa: E402
from radroute.data.manifest import Manifest, Sample  # noqa: E402
from radroute.data.preprocess import Preprocessing  # noqa: E402
from radroute.data.sources import data_root, load_shared  # noqa: E402


def one_pass(ds) -> float:
    t = time.perf_counter()
    for i in range(len(ds)):
        ds[i]
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--n", type=int, default=400, help="MedPix images to use")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    pre = Preprocessing(size=args.size)
    medpix = load_shared("medpix2")
    medpix = medpix.subset(range(min(args.n, len(medpix))))
    series = sorted((data_root() / "totalseg_ct" / "dicom_series_ct_abdomen").iterdir())
    ct = Manifest([Sample(str(p), {"label": "ct"}) for p in series], {"label": ["ct"]})
    print(f"{'source':<26}{'n':>5}{'decode pass img/s':>19}{'cache build img/s':>19}"
          f"{'cached pass img/s':>19}{'speed-up':>10}")
    for name, m in (("medpix2 JPEG", medpix), ("CT DICOM JPEG 2000", ct)):
        base = one_pass(ManifestDataset(m, pre))
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            cache = build_cache(m, pre, d, workers=args.workers if len(m) >= 64 else 0, progress=False)
            build = time.perf_counter() - t
            cached = one_pass(cache.dataset())
        n = len(m)
        print(f"{name:<26}{n:>5}{n / base:>19.1f}{n / build:>19.1f}{n / cached:>19.1f}{base / cached:>9.0f}x")


if __name__ == "__main__":
    main()
