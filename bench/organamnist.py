"""OrganAMNIST benchmark: validation accuracy, macro AUC and wall time on a small CPU.

Trains on the official train split (34,561 28x28 CT organ crops) and reports on the official
validation split (6,491), for ``roth2015``, ``menkovski2015``, one timm model, the frozen
features + linear SVM baseline (features of a backbone trained on *MedPix*, another shared
dataset: pretrained in a different domain, as Menkovski et al. did) and the probability average
of the trained networks. The baseline measured in the same run is a logistic regression on the
raw 28x28 pixels.

Every model gets the same recipe, fixed before looking at validation numbers: Adam (lr 1e-3)
with cosine warm restarts that complete within ``--time-budget`` minutes, batch 128, the
``roth2015`` augmentation (shifts, rotation, thin-plate-spline warps; no flips because the
labels are left/right organs), early stopping patience 5, fp32/bf16 per ``--precision``.

    nice -n 10 python bench/organamnist.py --time-budget 12 --json /tmp/organ.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="roth2015,menkovski2015,timm,features-svm",
                   help="comma list of roth2015, menkovski2015, timm, features-svm")
    p.add_argument("--timm-model", default="mobilenetv3_small_100")
    p.add_argument("--timm-size", type=int, default=64, help="input size of the timm model (28 -> N upsampling)")
    p.add_argument("--size", type=int, default=28, help="input size of the radroute CNNs")
    p.add_argument("--time-budget", type=float, default=15.0, help="training minutes per model")
    p.add_argument("--backbone-budget", type=float, default=4.0, help="minutes to train the MedPix backbone")
    p.add_argument("--backbone-arch", default="roth2015")
    p.add_argument("--epochs", type=int, default=30, help="upper bound; the budget usually ends training first")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--augment", default="roth2015")
    p.add_argument("--precision", default="auto")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 + 1 data worker = 2 cores)")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers (augmentation runs there)")
    p.add_argument("--max-train-samples", type=int, default=None, help="subset for a quick check")
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/radroute-bench-organamnist"))
    p.add_argument("--json", type=Path, default=None, help="write the results here too")
    p.add_argument("--no-baseline", action="store_true")
    return p.parse_args(argv)


def val_probs(pkg, x: np.ndarray, batch: int = 512) -> np.ndarray:
    import torch
    from scipy.special import softmax

    model = pkg.build()
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(x[i:i + batch])).float().numpy())
    return softmax(np.concatenate(outs), axis=1)


def summarise(name: str, y: np.ndarray, probs: np.ndarray, seconds: float, **extra) -> dict:
    from sklearn.metrics import roc_auc_score

    return {"model": name, "val_accuracy": float((probs.argmax(1) == y).mean()),
            "val_macro_auc": float(roc_auc_score(y, probs, multi_class="ovr", average="macro")),
            "wall_seconds": round(seconds, 1), **extra}


def pixel_baseline(cache, train_idx, y_train, x_val01, y_val) -> dict:
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    x_train = np.asarray(cache.images[train_idx], np.float32).reshape(len(train_idx), -1) / 255.0
    with threadpool_limits(1, user_api="blas"):
        clf = LogisticRegression(C=1.0, max_iter=300).fit(x_train, y_train)
        probs = clf.predict_proba(x_val01.reshape(len(x_val01), -1))
    return summarise("baseline: logistic regression on raw 28x28 pixels", y_val, probs,
                     time.perf_counter() - t0)


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from radroute.data import Preprocessing
    from radroute.data.augment import build_augmentation
    from radroute.data.cache import build_cache
    from radroute.data.sources import data_root, from_npz, load_shared
    from radroute.training import TrainConfig, fit_features_package, fit_package

    npz = data_root() / "organamnist" / "organamnist_trainval.npz"
    if not npz.exists():
        print(f"OrganAMNIST not found at {npz} (set RADROUTE_DATA)", file=sys.stderr)
        return 2
    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    manifest = from_npz(npz)
    wanted = args.models.split(",")
    results: list[dict] = []
    val_probs_by_model: dict[str, np.ndarray] = {}

    def datasets(size: int, augment: str | None):
        pre = Preprocessing(size=size, mean=0.5, std=0.25)
        cache = build_cache(manifest, pre, work / "cache", workers=0)
        train_idx = cache.indices("train")
        if args.max_train_samples:
            train_idx = np.sort(np.random.default_rng(0).permutation(train_idx)[:args.max_train_samples])
        aug = build_augmentation(augment, size) if augment and augment != "none" else None
        return pre, cache, train_idx, cache.dataset(indices=train_idx, augment=aug), cache.dataset("val")

    pre28, cache28, train_idx, _, _ = datasets(args.size, None)
    x_val, y_val2 = cache28.arrays("val")
    y_val = y_val2[:, 0]
    y_train = manifest.label_matrix()[train_idx, 0]
    print(f"OrganAMNIST: {len(train_idx)} train, {len(y_val)} val; torch threads {args.threads}; "
          f"cpu bf16: {__import__('radroute.training', fromlist=['x']).cpu_has_fast_bf16()}", file=sys.stderr)

    if not args.no_baseline:
        x_val01 = np.asarray(cache28.images[cache28.indices("val")], np.float32) / 255.0
        results.append(pixel_baseline(cache28, train_idx, y_train, x_val01, y_val))
        print(json.dumps(results[-1]), file=sys.stderr)

    def train_cnn(arch: str, size: int, label: str):
        pre, cache, tidx, train_ds, val_ds = datasets(size, args.augment)
        cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, optimizer="adam", lr=args.lr,
                          patience=5, seed=0, precision=args.precision, time_budget_min=args.time_budget,
                          eval_batch_size=512, workers=args.workers)
        t0 = time.perf_counter()
        pkg = fit_package(arch, manifest.tasks, train_ds, val_ds, pre, work / f"pkg-{arch}-{size}", cfg,
                          data={"source": str(npz), "n_train": len(tidx)})
        seconds = time.perf_counter() - t0
        xv, _ = cache.arrays("val")
        probs = val_probs(pkg, xv)
        val_probs_by_model[label] = probs
        results.append(summarise(label, y_val, probs, seconds, size=size,
                                 epochs=pkg.training["epochs_run"], best_epoch=pkg.training["best_epoch"],
                                 stop_reason=pkg.training["stop_reason"], precision=pkg.training["precision"],
                                 abstain_threshold=pkg.thresholds["label"],
                                 coverage_at_99=pkg.metrics["label"]["abstention"]["coverage"]))
        print(json.dumps(results[-1]), file=sys.stderr)

    for arch in ("roth2015", "menkovski2015"):
        if arch in wanted:
            train_cnn(arch, args.size, arch)
    if "timm" in wanted:
        train_cnn(args.timm_model, args.timm_size, f"{args.timm_model} (timm)")

    if "features-svm" in wanted:
        # 1) a backbone trained on MedPix (CT/MR teaching images: region, modality, plane)
        t0 = time.perf_counter()
        medpix = load_shared("medpix2")
        from radroute.data import ensure_splits

        medpix = ensure_splits(medpix, work / "medpix_splits.csv")
        mp_pre = Preprocessing(size=64, mean=0.5, std=0.25)
        mp_cache = build_cache(medpix, mp_pre, work / "cache", workers=0)
        aug = build_augmentation("roth2015", 64)
        mp_cfg = TrainConfig(epochs=args.epochs, batch_size=64, lr=args.lr, patience=5, precision=args.precision,
                             time_budget_min=args.backbone_budget)
        backbone = fit_package(args.backbone_arch, medpix.tasks, mp_cache.dataset("train", augment=aug),
                               mp_cache.dataset("val"), mp_pre, work / "pkg-medpix-backbone", mp_cfg,
                               data={"source": "medpix2"})
        backbone_s = time.perf_counter() - t0
        # 2) its frozen features on OrganAMNIST (upsampled to the backbone's 64 px) + linear SVM
        t1 = time.perf_counter()
        pre, cache, tidx, train_ds, val_ds = datasets(64, None)
        pkg = fit_features_package(backbone.path, manifest.tasks, train_ds, val_ds, pre,
                                   work / "pkg-features-svm", mode="features-svm",
                                   config=TrainConfig(precision=args.precision, eval_batch_size=512))
        probs = val_probs(pkg, cache.arrays("val")[0])
        results.append(summarise(f"features+SVM ({args.backbone_arch} trained on MedPix, frozen)", y_val, probs,
                                 time.perf_counter() - t1, backbone_seconds=round(backbone_s, 1),
                                 backbone_val_accuracy={t: m["accuracy"]["value"] for t, m in backbone.metrics.items()}))
        print(json.dumps(results[-1]), file=sys.stderr)

    if len(val_probs_by_model) > 1:
        probs = np.mean(list(val_probs_by_model.values()), axis=0)
        total = sum(r["wall_seconds"] for r in results if r["model"] in val_probs_by_model)
        results.append(summarise("ensemble (mean probability of " + ", ".join(val_probs_by_model) + ")",
                                 y_val, probs, total))

    base = next((r for r in results if r["model"].startswith("baseline")), None)
    print("\n| model | val accuracy | macro AUC | wall time | vs pixel baseline (acc) |")
    print("|---|---|---|---|---|")
    for r in results:
        ratio = f"{r['val_accuracy'] / base['val_accuracy']:.2f}x" if base else "-"
        print(f"| {r['model']} | {r['val_accuracy']:.4f} | {r['val_macro_auc']:.4f} | "
              f"{r['wall_seconds'] / 60:.1f} min | {ratio} |")
    report = {"command": " ".join(sys.argv), "args": {k: str(v) for k, v in vars(args).items()},
              "torch_threads": args.threads, "nproc": os.cpu_count(), "loadavg_end": os.getloadavg(),
              "results": results}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
