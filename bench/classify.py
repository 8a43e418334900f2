"""End-to-end `radroute classify` throughput and memory, each beside a baseline from the same run.

Each figure is the best of ``--repeat`` passes, so that both sides see a warm page cache.

(a) 512 x 512 uncompressed CT DICOM (real dicom_zoo CT slices, symlinked N times):
    end-to-end images/s (read + decode + window + resize + model + JSON record) against plain
    ``pydicom.dcmread(path).pixel_array`` in one process.
(b) 2k x 2k CR in JPEG 2000 lossless and JPEG-LS lossless (a real CR chest re-encoded with
    pydicom's encoders into a temporary folder): end-to-end images/s against radroute's own
    decode-only rate (same reader, same workers, no model) on the same files.
(c) memory: peak memory (PSS of the classify process and its decode workers together) classifying
    10,000 inputs against 1,000 (symlinks to a few real files), through the CLI.

    nice -n 10 .venv/bin/python bench/classify.py [--model ct-mr-region] [--workers 2] [--quick]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from radroute.inference import load_model  # noqa: E402
from radroute.inference.pipeline import decode_paths, default_workers  # noqa: E402

CT_FILES = ["wg04/CT1_UNC.dcm", "wg04/CT2_UNC.dcm", "fo-dicom/GH1308_ct_lspine.dcm",
            "fo-dicom/GH342_ct_surview_abdomen.dcm"]
SMALL_FILES = ["pydicom/MR_small.dcm", "pydicom/CT_small.dcm", "pydicom/MR_small_RLE.dcm",
               "pydicom/MR_small_jpeg_ls_lossless.dcm"]


def data_root() -> Path:
    return Path(os.environ.get("RADROUTE_DATA", REPO.parent / "shared" / "data")).resolve()


def links(folder: Path, sources: list[Path], n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"{i:06d}.dcm"
        os.symlink(sources[i % len(sources)], p)
        out.append(p)
    return out


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("nan")


def pydicom_baseline(paths: list[Path]) -> float:
    start = time.perf_counter()
    for p in paths:
        pydicom.dcmread(p).pixel_array
    return rate(len(paths), time.perf_counter() - start)


def end_to_end(predictor, paths: list[Path], workers: int, batch_size: int) -> float:
    start = time.perf_counter()
    n = sum(1 for r in predictor.iter_predict(paths, workers=workers, batch_size=batch_size)
            if r.error is None)
    return rate(n, time.perf_counter() - start)


def decode_only(predictor, paths: list[Path], workers: int) -> float:
    plans = {predictor.name: predictor.package.preprocessing}
    start = time.perf_counter()
    n = sum(len(d.images) for d in decode_paths(paths, plans, workers=workers))
    return rate(n, time.perf_counter() - start)


def make_2k(source: Path, folder: Path, n: int) -> dict[str, list[Path]]:
    """``n`` 2048 x 2048 copies of a real CR in JPEG 2000 and JPEG-LS lossless (distinct files:
    each copy gets a different SOP Instance UID and a one-pixel change)."""
    from PIL import Image as PILImage
    from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, generate_uid

    ds = pydicom.dcmread(source)
    arr = ds.pixel_array.astype(np.uint16)
    arr = np.asarray(PILImage.fromarray(arr.astype(np.int32)).resize((2048, 2048), PILImage.BILINEAR))
    arr = np.clip(arr, 0, 2 ** int(ds.BitsStored) - 1).astype(np.uint16)
    out: dict[str, list[Path]] = {}
    for name, uid in (("jpeg2000", JPEG2000Lossless), ("jpegls", JPEGLSLossless)):
        sub = folder / name
        sub.mkdir(parents=True, exist_ok=True)
        out[name] = []
        for i in range(n):
            d = pydicom.dcmread(source)
            img = arr.copy()
            img[0, 0] = i % 7
            d.Rows, d.Columns = 2048, 2048
            d.SOPInstanceUID = generate_uid()
            d.compress(uid, img, encoding_plugin="pylibjpeg" if name == "jpeg2000" else "pyjpegls")
            path = sub / f"{i:04d}.dcm"
            d.save_as(path, enforce_file_format=True)
            out[name].append(path)
    return out


class PeakRss:
    """Peak of the summed proportional set size (PSS: shared pages split between the processes
    that share them, so forked workers are not counted twice) of a process and all its
    descendants, sampled every 20 ms."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _tree(root: int) -> list[int]:
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    ppid = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo += children.get(pid, [])
        return out

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, sum(self._rss(p) for p in self._tree(self.pid)))
            time.sleep(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def cli_peak_rss(folder: Path, model: str, workers: int, out: Path) -> tuple[float, float, str]:
    """(peak PSS in MB, seconds, last stderr line) of `radroute classify folder`."""
    cmd = [sys.executable, "-c", "from radroute.cli import main; main()", "classify", str(folder),
           "--model", model, "--format", "jsonl", "--out", str(out), "--workers", str(workers),
           "--no-progress"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    with PeakRss(proc.pid) as peak:
        _, err = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"classify failed: {err}")
    return peak.peak / 1e6, time.perf_counter() - start, err.strip().splitlines()[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ct-mr-region", help="CT model for (a) and (c)")
    ap.add_argument("--xray-model", default="chest-view", help="model for (b)")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--workers", type=int, default=default_workers(),
                    help="decode processes (default: as radroute classify)")
    ap.add_argument("--threads", type=int, default=1, help="model runtime threads")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--n-ct", type=int, default=1000)
    ap.add_argument("--n-2k", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=2, help="best of this many passes per figure")
    ap.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: a,b,c")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    if args.quick:
        args.n_ct, args.n_2k = 200, 6
    zoo = data_root() / "dicom_zoo" / "files"
    results: dict = {"load_average_start": os.getloadavg(), "cpus": os.cpu_count(),
                     "workers": args.workers, "threads": args.threads, "backend": args.backend}
    skip = set(args.skip.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "a" not in skip:
            ct = load_model(args.model, args.backend, threads=args.threads)
            paths = links(tmp / "ct", [zoo / f for f in CT_FILES], args.n_ct)
            base = max(pydicom_baseline(paths) for _ in range(args.repeat))
            e2e = max(end_to_end(ct, paths, args.workers, args.batch_size) for _ in range(args.repeat))
            e2e0 = max(end_to_end(ct, paths, 0, args.batch_size) for _ in range(args.repeat))
            results["a_ct512"] = {"n": len(paths), "model": ct.name, "backend": ct.backend,
                                  "pydicom_read_pixel_array_img_s": round(base, 1),
                                  f"radroute_end_to_end_img_s_workers_{args.workers}": round(e2e, 1),
                                  "radroute_end_to_end_img_s_workers_0": round(e2e0, 1),
                                  "ratio": round(max(e2e, e2e0) / base, 2)}
            print(json.dumps({"a_ct512": results["a_ct512"]}), flush=True)
        if "b" not in skip:
            xr = load_model(args.xray_model, args.backend, threads=args.threads)
            made = make_2k(zoo / "wg04/RG1_J2KI.dcm", tmp / "2k", args.n_2k)
            for name, paths in made.items():
                dec = max(decode_only(xr, paths, args.workers) for _ in range(args.repeat))
                e2e = max(end_to_end(xr, paths, args.workers, args.batch_size) for _ in range(args.repeat))
                results[f"b_2k_{name}"] = {
                    "n": len(paths), "model": xr.name, "decode_only_img_s": round(dec, 2),
                    "end_to_end_img_s": round(e2e, 2), "ratio": round(e2e / dec, 2)}
                print(json.dumps({f"b_2k_{name}": results[f"b_2k_{name}"]}), flush=True)
        if "c" not in skip:
            sources = [zoo / f for f in SMALL_FILES]
            small, large = links(tmp / "m1k", sources, 1000), links(tmp / "m10k", sources, 10_000)
            rss1, s1, line1 = cli_peak_rss(tmp / "m1k", args.model, args.workers, tmp / "m1k.jsonl")
            rss10, s10, line10 = cli_peak_rss(tmp / "m10k", args.model, args.workers, tmp / "m10k.jsonl")
            results["c_memory"] = {"peak_pss_mb_1k": round(rss1), "peak_pss_mb_10k": round(rss10),
                                   "ratio": round(rss10 / rss1, 3), "seconds_1k": round(s1, 1),
                                   "seconds_10k": round(s10, 1), "stderr_10k": line10}
            print(json.dumps({"c_memory": results["c_memory"]}), flush=True)
            del small, large
    results["load_average_end"] = os.getloadavg()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
