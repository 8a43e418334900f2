#!/usr/bin/env python
"""Speed of ``radroute profile`` beside ``radroute classify`` on the same CT slices, same run.

    nice -n 10 .venv/bin/python bench/ct_profile.py [--slices 200] [--threads 2] [--json out.json]

The volume is the real 512 x 512 x 20 DICOM series of ``totalseg_ct`` (JPEG 2000), tiled along z
to ``--slices`` slices and to 652 slices (Roth et al. 2015's whole-body example). Measured:

* profile: :func:`radroute.inference.profile.profile_volume` on the in-memory volume (window,
  resize of the whole stack with torch, batched model, smoothing, decoding), torch and ONNX Runtime;
* baseline "classify, separate images": the same HU slices, each windowed and given one by one
  to ``Predictor.predict`` (per-image Pillow resize, batches of 64, one record per slice), as
  ``radroute classify`` does with the slices of a NIfTI file;
* from files: ``read_volume`` + profile of the 20-slice series vs ``Predictor.predict`` on its
  20 DICOM files (decoding included on both sides);
* the 652-slice volume end to end: profile plus writing profile.csv, summary.json, profile.png.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
# this file is named like the standard library's ``profile`` (which cProfile, and so torch,
# import): keep bench/ off the import path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(REPO / "src"))


def timed(fn, repeat: int = 1):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def tiled(volume, n: int):
    from radroute.io.types import Volume

    reps = int(np.ceil(n / volume.voxels.shape[0]))
    vox = np.tile(volume.voxels, (reps, 1, 1))[:n]
    dz = float(volume.spacing[0])
    z = float(volume.z_mm[0]) - dz * np.arange(n)
    return Volume(voxels=np.ascontiguousarray(vox), spacing=volume.spacing, z_mm=z, meta=volume.meta)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--big", type=int, default=652)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="ct-slice-region")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from radroute.inference import load_model
    from radroute.inference.profile import profile_volume
    from radroute.inference.profile_plot import write_profile
    from radroute.io import read_volume
    from radroute.io.windowing import window_array

    data = Path(os.environ.get("RADROUTE_DATA", REPO.parent / "shared" / "data"))
    series = data / "totalseg_ct" / "dicom_series_ct_abdomen"
    t_read20, vol20 = timed(lambda: read_volume(series))
    vol = tiled(vol20, args.slices)
    n = vol.voxels.shape[0]
    predictors = {"torch": load_model(args.model, backend="torch", threads=args.threads)}
    try:
        predictors["onnx"] = load_model(args.model, backend="onnx", threads=args.threads)
    except Exception as exc:  # noqa: BLE001 - the bench still reports torch
        print(f"onnx backend unavailable: {exc}", file=sys.stderr)
    pre = predictors["torch"].preprocessing
    results: dict = {"slices": n, "shape": list(vol.voxels.shape), "threads": args.threads,
                     "model": args.model, "model_version": predictors["torch"].version,
                     "cpu_count": os.cpu_count()}

    profile_volume(tiled(vol20, 64), predictors["torch"])  # warm-up
    for name, pred in predictors.items():
        t, _ = timed(lambda p=pred: profile_volume(vol, p), repeat=2)
        results[f"profile_{name}_s"] = t
        results[f"profile_{name}_slices_per_s"] = n / t

    def classify_separately():  # each HU slice windowed, then resized and classified as one image
        return predictors["torch"].predict((window_array(s, pre.window) for s in vol.voxels), batch_size=64)

    predictors["torch"].predict([window_array(s, pre.window) for s in vol.voxels[:32]])  # warm-up
    t, _ = timed(classify_separately, repeat=2)
    results["classify_images_torch_s"] = t
    results["classify_images_torch_slices_per_s"] = n / t

    paths = [str(p) for p in vol20.slice_paths]
    t_cls_files, _ = timed(lambda: predictors["torch"].predict(paths, batch_size=64), repeat=2)
    t_prof_files, _ = timed(lambda: profile_volume(read_volume(series), predictors["torch"]), repeat=2)
    results["files20_classify_s"] = t_cls_files
    results["files20_profile_s"] = t_prof_files
    results["files20_read_volume_s"] = t_read20

    big = tiled(vol20, args.big)
    best = "onnx" if "onnx" in predictors else "torch"
    for name, pred in predictors.items():
        t, prof = timed(lambda p=pred: profile_volume(big, p))
        results[f"big_{name}_profile_s"] = t
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        prof = profile_volume(big, predictors[best])
        write_profile(prof, big, tmp)
        results[f"big_{best}_profile_and_write_s"] = time.perf_counter() - t0

    ratio = results["profile_torch_slices_per_s"] / results["classify_images_torch_slices_per_s"]
    print(f"volume {n} x 512 x 512, {args.threads} threads, model {args.model} ({results['model_version']})")
    print(f"{'method':48s} {'seconds':>8s} {'slices/s':>9s}")
    print(f"{'classify, slices as separate images (torch)':48s} {results['classify_images_torch_s']:8.2f} "
          f"{results['classify_images_torch_slices_per_s']:9.1f}   baseline")
    for name in predictors:
        print(f"{'profile, stacked slices (' + name + ')':48s} {results[f'profile_{name}_s']:8.2f} "
              f"{results[f'profile_{name}_slices_per_s']:9.1f}")
    print(f"profile/classify speed ratio (torch): {ratio:.2f}x")
    print(f"20 DICOM files: classify {t_cls_files:.2f} s, read_volume + profile {t_prof_files:.2f} s")
    for name in predictors:
        print(f"{args.big}-slice volume, profile ({name}): {results[f'big_{name}_profile_s']:.2f} s")
    print(f"{args.big}-slice volume, profile + csv/json/png ({best}): "
          f"{results[f'big_{best}_profile_and_write_s']:.2f} s  (target < 20 s on 2 cores)")
    results["profile_vs_classify_ratio"] = ratio
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
