"""Cost of results as DICOM SR, beside the classification it reports.

radroute = ``build_sr`` + encode (what ``classify --sr`` and the router's ``send_results`` add per
instance), against the baseline measured in the same run on the same files: classifying them
with the bundled ``ct-mr-region`` model (read + preprocess + ONNX Runtime, one thread), so the
ratio says how much an SR adds to each classified instance.

    nice -n 10 .venv/bin/python bench/sr.py [--files 20] [--repeat 3]
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
import warnings
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from radroute.inference import load_model  # noqa: E402
from radroute.inference.sr import build_sr  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path,
                        default=Path(os.environ.get("RADROUTE_DATA", REPO.parent / "shared/data")))
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    print(f"load average at start: {os.getloadavg()}")

    zoo = sorted((args.data / "dicom_zoo" / "files" / "wg04").glob("*_UNC.dcm"))
    paths = [str(p) for p in zoo if pydicom.dcmread(p, stop_before_pixels=True).Modality in ("CT", "MR")]
    paths = (paths * args.files)[: args.files]
    model = load_model("ct-mr-region", backend="onnx", threads=1)
    records = model.predict(paths, batch_size=len(paths), frames=0)
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in paths]

    def classify() -> None:
        model.predict(paths, batch_size=len(paths), frames=0)

    def report() -> None:
        for record, header in zip(records, headers):
            build_sr(record, header).save_as(io.BytesIO(), enforce_file_format=True)

    base, sr = _best(classify, args.repeat), _best(report, args.repeat)
    n = len(paths)
    print(f"{n} CT/MR instances, best of {args.repeat}")
    print(f"classify (baseline): {n / base:8.1f} instances/s")
    print(f"build + encode SR:   {n / sr:8.1f} SRs/s  ({sr / base:.2f}x the classification time)")
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
