#!/usr/bin/env python
"""Train radroute's bundled models reproducibly from the shared data (``$RADROUTE_DATA``).

    nice -n 10 .venv/bin/python scripts/train_bundled.py ct-mr-region chest-view ct-organ

Each model is a :class:`radroute.training.TrainJob` run by :func:`radroute.training.run`, as
``radroute train`` runs one: its data (a manifest from the shared sets, :data:`SPECS`), a fixed
schedule with the last epoch kept (no epoch picked on validation, so the validation figures are
not tuned on), metrics with confidence intervals and per-task abstention targets. The run
(log, checkpoints) stays in ``runs/<dest>/<name>``; the package is installed into
``src/radroute/models/bundled/<name>/`` (radroute.json, weights.safetensors, model.onnx,
MODEL_CARD.md; chest-view also its split file ``split.csv``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from radroute.data import Manifest, ensure_splits, load_shared
from radroute.models import ModelPackage
from radroute.models.package import CONFIG_NAME, WEIGHTS_NAME
from radroute.training import TrainJob, run

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "src" / "radroute" / "models" / "bundled"

MEDPIX_REGION = {
    "Head": "head", "Thorax": "thorax", "Abdomen": "abdomen",
    "Reproductive and Urinary System": "genitourinary", "Spine and Muscles": "spine_musculoskeletal",
}


def medpix_region(package_dir: Path) -> Manifest:
    """MedPix 2.0 images: modality and body region (the given train/dev splits)."""
    m = load_shared("medpix2", label_columns={"modality": "modality", "region": "location_category"})
    samples = [replace(s, labels={**s.labels, "region": MEDPIX_REGION[s.labels["region"]]}
                       if "region" in s.labels else s.labels) for s in m.samples]
    return Manifest(samples, {"modality": ["CT", "MR"], "region": list(MEDPIX_REGION.values())},
                    root=m.root, origin=m.origin)


def chest_views(package_dir: Path) -> Manifest:
    """Chest radiographs, frontal or lateral: no split column, so patient-grouped splits
    stratified by view, saved beside the model (``split.csv``)."""
    m = load_shared("chest_views")
    m = Manifest(m.samples, {"view": ["frontal", "lateral"]}, root=m.root, origin=m.origin)
    return ensure_splits(m, package_dir / "split.csv", fractions=(0.7, 0.3, 0.0), seed=0,
                         stratify_task="view", keep_given=False)


def organamnist(package_dir: Path) -> Manifest:
    """OrganAMNIST's official train/val splits."""
    return load_shared("organamnist", task="organ")


@dataclass
class Spec:
    """How one bundled model is made: its data, its :class:`~radroute.training.TrainJob` fields
    and what its model card says."""

    source: str                           # radroute.data shared-set name
    manifest: Callable[[Path], Manifest]  # labelled samples with train/val splits (arg: the package folder)
    job: dict[str, Any]                   # TrainJob fields on top of COMMON
    jitter: bool = True                   # brightness/contrast jitter on top of the augmentation preset
    licence: str = ""
    description: str = ""
    selection: str = ""                   # how this configuration was chosen, when validation played a part


#: every bundled model: Adam with its cosine schedule for a fixed number of epochs, the last
#: epoch kept (validation only measures), seed 0
COMMON: dict[str, Any] = {"optimizer": "adam", "patience": 0, "select_on_val": False, "seed": 0, "workers": 0}

SPECS: dict[str, Spec] = {
    "ct-mr-region": Spec(
        source="medpix2", manifest=medpix_region,
        job={"arch": "menkovski2015", "size": 64, "window": "soft_tissue",
             "arch_kwargs": {"blocks": [[16, 8], [32, 16], [64, 64, 32], [128, 128, 64]], "dense": 128},
             "augment": "menkovski2015", "epochs": 40, "batch_size": 32, "lr": 1e-3,
             "abstain_target": {"modality": 0.97, "region": 0.9},
             "body_part_map": {"region": {"head": "head", "thorax": "chest", "abdomen": "abdomen",
                                          "genitourinary": "pelvis", "spine_musculoskeletal": "spine"}}},
        licence="MedPix 2.0 (NLM MedPix teaching images via Siragusa et al. 2025): no licence "
                "file; research use, cite the source.",
        description="Modality (CT or MR) and body region of a CT or MR image.",
        selection="This configuration was chosen among three trained in this session by their "
                  "figures on this validation set and on the dicom_zoo slices: MobileNet-V3-small "
                  "at 128 px (30 epochs; modality 0.79, region 0.51), the full-width Menkovski CNN "
                  "at 64 px (modality 0.92, region 0.68; 4x slower) and this half-width one "
                  "(modality 0.93, region 0.66), so the figures below are slightly optimistic."),
    "chest-view": Spec(
        source="chest_views", manifest=chest_views,
        job={"arch": "mobilenetv3_small_100", "size": 128, "window": "auto", "augment": "menkovski2015",
             "epochs": 40, "lr": 1e-3, "balance": "view", "abstain_target": {"view": 0.99},
             "body_part_map": {"view": {"frontal": "chest", "lateral": "chest"}}},
        licence="covid-chestxray-dataset images under per-image licences, many CC BY-NC-SA / "
                "CC BY-NC-ND: the weights are for non-commercial research use only.",
        description="View of a chest radiograph: frontal (PA/AP) or lateral."),
    "ct-organ": Spec(
        source="organamnist", manifest=organamnist,
        job={"arch": "roth2015", "size": 28, "window": "abdomen", "augment": "roth2015", "epochs": 8,
             "batch_size": 128, "lr": 1e-3, "abstain_target": {"organ": 0.98},
             "body_part_map": {"organ": {
                 "bladder": "pelvis", "femur-left": "pelvis", "femur-right": "pelvis", "heart": "chest",
                 "kidney-left": "abdomen", "kidney-right": "abdomen", "liver": "abdomen",
                 "lung-left": "chest", "lung-right": "chest", "pancreas": "abdomen", "spleen": "abdomen"}}},
        licence="OrganAMNIST (MedMNIST v3) CC BY 4.0, from LiTS: cite MedMNIST v2 and LiTS.",
        description="Organ in a 28x28 axial CT crop around one organ (OrganAMNIST)."),
}

#: command-line overrides -> TrainJob fields
OVERRIDES = {"epochs": "epochs", "size": "size", "architecture": "arch", "batch_size": "batch_size",
             "arch_kwargs": "arch_kwargs", "max_train_samples": "max_train_samples"}


class _Clamp01(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(0.0, 1.0)


def jitter() -> torch.nn.Module:
    """MedPix / journal JPEGs come with many windows and contrasts: make the model indifferent."""
    from torchvision.transforms import v2

    return v2.Compose([v2.RandomApply([v2.ColorJitter(brightness=0.25, contrast=0.35)], p=0.8), _Clamp01()])


def split_counts(manifest: Manifest) -> dict[str, dict[str, dict[str, int]]]:
    """Per split and task, the number of images of each class."""
    return {s: {t: manifest.subset(np.flatnonzero([x.split == s for x in manifest.samples])).class_counts(t)
                for t in manifest.tasks} for s in ("train", "val")}


def command_of(name: str, dest: Path, overrides: dict[str, Any]) -> str:
    """The command line that makes this package again."""
    command = f"nice -n 10 .venv/bin/python scripts/train_bundled.py {name}"
    if dest != BUNDLED:
        command += f" --dest {dest}"
    return command + "".join(f" --{k.replace('_', '-')} {json.dumps(v) if isinstance(v, dict) else v}"
                             for k, v in overrides.items())


def job_for(name: str, dest: Path, threads: int, progress: bool, **overrides: Any) -> TrainJob:
    """The training job of a bundled model; the package is trained in ``runs/`` and installed
    into ``dest/name``, where the manifest may save its split file."""
    spec = SPECS[name]
    fields = {**COMMON, **spec.job}
    given = {k: v for k, v in overrides.items() if v is not None and v != fields.get(OVERRIDES[k])}
    fields.update({OVERRIDES[k]: v for k, v in given.items()})
    package_dir = dest / name
    package_dir.mkdir(parents=True, exist_ok=True)
    manifest = spec.manifest(package_dir)
    return TrainJob(
        data=manifest, out=REPO / "runs" / dest.name / name, name=name, threads=threads, cache_workers=threads,
        progress=progress, extra_augment=jitter() if spec.jitter else None, command=command_of(name, dest, given),
        training={"source": spec.source, "licence": spec.licence, "description": spec.description,
                  "split_counts": split_counts(manifest), "jitter": spec.jitter,
                  "split_file": "split.csv" if (package_dir / "split.csv").exists() else None,
                  "torch": torch.__version__},
        **fields)


def install(package: ModelPackage, dest: Path) -> ModelPackage:
    """Copy the package (config and weights) into ``dest`` and export ``model.onnx`` beside it."""
    from radroute.inference.onnx import ONNX_BESIDE, export_onnx

    dest.mkdir(parents=True, exist_ok=True)
    for file in (CONFIG_NAME, WEIGHTS_NAME):
        shutil.copy2(package.path / file, dest / file)
    installed = ModelPackage.load(dest)
    export_onnx(installed, dest / ONNX_BESIDE)
    return installed


def train(name: str, threads: int, progress: bool, dest: Path = BUNDLED, **overrides: Any) -> Path:
    t0 = time.time()
    package = install(run(job_for(name, dest, threads, progress, **overrides)), dest / name)
    write_model_card(package, SPECS[name])
    print(f"{name}: done in {time.time() - t0:.0f} s -> {package.path}", file=sys.stderr)
    return package.path


def recalibrate(package: ModelPackage, spec: Spec) -> None:
    """Recompute the validation metrics and abstention thresholds of a saved package (its
    weights unchanged) and rewrite its radroute.json."""
    from radroute.data.cache import build_cache
    from radroute.data.preprocess import Preprocessing
    from radroute.training.package_metrics import validation_summary

    manifest = spec.manifest(package.path)
    cache = build_cache(manifest, Preprocessing.from_dict(package.preprocessing), workers=0, progress=False)
    x, y = cache.arrays("val")
    model = package.build()
    with torch.inference_mode():
        logits = torch.cat([model(torch.from_numpy(x[i:i + 256])) for i in range(0, len(x), 256)]).numpy()
    package.metrics, package.thresholds = validation_summary(logits, y, manifest.tasks, spec.job["abstain_target"])
    (package.path / CONFIG_NAME).write_text(json.dumps(package.to_config(), indent=2) + "\n")


def _ci(d: dict | None) -> str:
    if not d or d.get("value") is None:
        return "n/a"
    lo, hi = d.get("ci_low", d.get("low")), d.get("ci_high", d.get("high"))
    return f"{d['value']:.3f} (95% CI {lo:.3f}-{hi:.3f})" if lo is not None else f"{d['value']:.3f}"


def metrics_markdown(package) -> list[str]:
    from radroute.evaluation.metrics import proportion

    lines = []
    for task, classes in package.tasks.items():
        m = package.metrics[task]
        lines += [f"### task `{task}` (n = {m['n']} validation images)", "",
                  f"- accuracy: {_ci(m['accuracy'])} (Clopper-Pearson)",
                  f"- macro F1: {_ci(m['macro']['f1'])} (bootstrap); macro AUC: "
                  f"{m['macro'].get('auc') or float('nan'):.3f}",
                  "", "| class | support | recall (95% CI, Clopper-Pearson) "
                  "| precision (95% CI, Clopper-Pearson) |",
                  "|---|---|---|---|"]
        cm = np.asarray(m["confusion_matrix"])
        for i, c in enumerate(classes):
            recall = proportion(int(cm[i, i]), int(cm[i].sum()))
            precision = proportion(int(cm[i, i]), int(cm[:, i].sum()))
            lines.append(f"| {c} | {cm[i].sum()} | {recall['k']}/{recall['n']} = {_ci(recall)} | "
                         f"{precision['k']}/{precision['n']} = {_ci(precision)} |")
        a = m["abstention"]
        lines += ["", f"- abstention threshold (top softmax score): {a['threshold']:.3f}, chosen as "
                  f"the lowest score at which the accepted validation images reach {a['target']:.0%} "
                  f"accuracy: coverage {a['coverage']:.1%}, accuracy of the accepted "
                  f"{(a['accuracy_accepted'] or 0):.1%} (n = {a['n']}"
                  + ("; noisy on a set this small)." if a["n"] < 1000 else ")."),
                  f"- confusion matrix (rows true, columns predicted, order {classes}): "
                  f"`{m['confusion_matrix']}`", ""]
    return lines


def write_model_card(package: ModelPackage, spec: Spec) -> Path:
    t = package.training
    data = t.get("data") or {}  # packages from before radroute.training.run kept these at the top level
    unreadable = data.get("unreadable", t.get("unreadable"))
    augment = data.get("augment", t.get("augment"))
    balance = data.get("balance", t.get("balance_task"))
    bp = "\n".join(f"| {task} | {label} | {part} |" for task, mp in package.body_part_map.items()
                   for label, part in mp.items())
    counts = "\n".join(f"- {split}: " + "; ".join(f"{task}: " + ", ".join(f"{c} {n}" for c, n in cc.items())
                                                  for task, cc in tc.items())
                       for split, tc in t["split_counts"].items())
    text = "\n".join([
        f"# Model card: `{package.name}`", "",
        spec.description, "",
        "| | |", "|---|---|",
        f"| tasks | " + "; ".join(f"`{k}`: {', '.join(v)}" for k, v in package.tasks.items()) + " |",
        f"| architecture | `{package.architecture}` {package.arch_kwargs or ''}, trained from scratch |",
        f"| input | {package.preprocessing['size']} x {package.preprocessing['size']}, 1 channel, "
        f"window `{package.preprocessing['window']}`, aspect kept (zero padding), "
        f"(x - {package.preprocessing['mean']}) / {package.preprocessing['std']} |",
        f"| version (weights hash) | `{package.version}` |",
        f"| weights | {package.weights_path.stat().st_size / 1e6:.1f} MB safetensors + model.onnx |", "",
        "## Data and licences", "",
        f"- source: `{t['source']}` under `$RADROUTE_DATA` ({t['n_train']} training, {t['n_val']} "
        f"validation images; {unreadable} unreadable skipped).",
        f"- licence: {t['licence']}",
        counts, "",
        "## Training", "",
        f"    {t['command']}", "",
        f"{t['epochs_run']} epochs ({t['train_seconds']} s on a shared 2-core CPU), Adam preset "
        f"of radroute.training with its cosine schedule, batch {t['config']['batch_size']}, "
        f"augmentation `{augment}`" + (" + brightness/contrast jitter" if t["jitter"] else "")
        + (f", classes of `{balance}` drawn equally often" if balance else "")
        + ". No epoch was picked on the validation set: the last epoch is kept."
        + (f" {spec.selection}" if spec.selection else ""), "",
        "## Validation metrics", "",
        *metrics_markdown(package),
        "## Body-part mapping", "",
        "| task | label | radroute body part |", "|---|---|---|", bp, "",
        "## Known limits", "",
        *[f"- {x}" for x in LIMITS[package.name]], "",
    ])
    path = package.path / "MODEL_CARD.md"
    path.write_text(text)
    return path


LIMITS = {
    "ct-mr-region": [
        "Trained on 8-bit teaching JPEGs (MedPix), many with watermarks and captions; DICOM CT is "
        "shown to it through the soft-tissue window (40/400), MR through the file's own window "
        "or a percentile window, which is close to but not the same as those JPEGs.",
        "MedPix labels are per case, not per image: about 5-10 % of the images are labelled "
        "wrongly at image level, which caps the measurable accuracy.",
        "`spine_musculoskeletal` mixes spine and limb images (MedPix's 'Spine and Muscles'); "
        "it maps to `spine` only as the closest vocabulary term.",
        "Only CT and MR: anything else (X-ray, ultrasound, photographs) still gets one of these "
        "labels; use the abstention flag and the DICOM Modality.",
        "Small validation set (197 images, case-disjoint dev split): wide intervals. Region is "
        "much weaker than modality; `genitourinary` is rarely recognised.",
        "On the 12 real CT/MR DICOM slices of dicom_zoo (tests/inference/test_bundled.py) the "
        "modality was right on 10: wrong were an inversion-recovery brain MR shown with a white "
        "background (MR4_UNC) and an abdominal MR with overlay (MR-SIEMENS-DICOM-WithOverlays); "
        "rely on the DICOM Modality tag where it exists.",
        "A half-width Menkovski 2015 CNN trained from scratch at 64 x 64 in ~4 minutes on a "
        "2-core CPU: a small, fast model, not a state-of-the-art one.",
    ],
    "chest-view": [
        "Only 25 lateral radiographs (18 patients) exist in the data: lateral recall is measured "
        "on a handful of images, its interval is wide; do not rely on it without checking on "
        "your own data.",
        "Many training images are journal-figure panels with arrows and letters (COVID-19 "
        "case reports), not clinical DICOM; real CR/DX DICOM is windowed with the file's VOI.",
        "Non-chest radiographs still get frontal/lateral: radroute ships no X-ray body-part "
        "model (no such data was available).",
        "Weights for non-commercial research use only (CC BY-NC training images).",
    ],
    "ct-organ": [
        "OrganAMNIST images are 28x28 crops around one organ, not whole slices: on a whole CT "
        "slice the prediction is not meaningful (use ct-mr-region or the CT volume profiles).",
        "Left/right classes depend on the image orientation of the crops (radiological "
        "convention); flipped input swaps them.",
        "The official MedMNIST test split is not used here; figures are on the official val split.",
    ],
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", help=f"models to train (default: all of {', '.join(SPECS)})")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: on a busy shared CPU more threads only spin)")
    ap.add_argument("--epochs", type=int, default=None, help="override the model's epochs")
    ap.add_argument("--size", type=int, default=None, help="override the input size")
    ap.add_argument("--architecture", default=None, help="override the architecture")
    ap.add_argument("--batch-size", type=int, default=None, help="override the batch size")
    ap.add_argument("--arch-kwargs", type=json.loads, default=None,
                    help="override the architecture's keyword arguments (JSON)")
    ap.add_argument("--max-train-samples", type=int, default=None,
                    help="train on a seeded random subset (quick checks)")
    ap.add_argument("--dest", type=Path, default=BUNDLED, help="write the packages here")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("--finish-only", action="store_true",
                    help="only recompute validation metrics and thresholds, re-export model.onnx "
                         "and rewrite MODEL_CARD.md of saved packages (weights unchanged)")
    args = ap.parse_args()
    unknown = set(args.names) - set(SPECS)
    if unknown:
        ap.error(f"unknown model(s) {sorted(unknown)}; choose from {', '.join(SPECS)}")
    for name in args.names or list(SPECS):
        if args.finish_only:
            from radroute.inference.onnx import ONNX_BESIDE, export_onnx

            package = ModelPackage.load(args.dest / name)
            recalibrate(package, SPECS[name])
            export_onnx(package, package.path / ONNX_BESIDE)
            print(write_model_card(package, SPECS[name]))
            continue
        train(name, args.threads, not args.no_progress, args.dest, epochs=args.epochs, size=args.size,
              architecture=args.architecture, batch_size=args.batch_size, arch_kwargs=args.arch_kwargs,
              max_train_samples=args.max_train_samples)


if __name__ == "__main__":
    main()
