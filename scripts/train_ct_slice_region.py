#!/usr/bin/env python
"""Build the training set of the bundled ``ct-slice-region`` model and train it, reproducibly.

    nice -n 10 .venv/bin/python scripts/train_ct_slice_region.py [--out DIR] [--epochs 40]
    nice -n 10 .venv/bin/python scripts/train_ct_slice_region.py --install-only   # card + model.onnx

The bundled weights come from ``--epochs 40 --time-budget-min 30`` on 2 shared CPU cores (seed 0);
the budget cut the 40th epoch short, the weights are those of the best epoch on MedPix dev.

Data (under ``$RADROUTE_DATA``, default ``../shared/data``):

* MedPix 2.0 axial CT JPEGs (``medpix2/labels.csv``: modality CT, plane Axial/Transverse), the
  given ``train`` split for training and ``dev`` for validation. Labels come from the case's
  ``location_category`` (Head -> head, Thorax -> chest, Abdomen -> abdomen, Reproductive and
  Urinary System -> pelvis), corrected by the image caption where it names one other trunk
  region (see :func:`medpix_label`): most "Reproductive and Urinary System" images are kidney or
  adrenal slices (abdomen), and many "Abdomen" cases are pelvic. "Spine and Muscles" images are
  kept only when their caption names exactly one region.
* Every axial slice of the two TotalSegmentator chest CT volumes (``chest_ct_pulmonary`` and
  ``chest_cta``, 1.5 mm, heart-centred crops), labelled by level (:data:`CHEST_VOLUMES`: abdomen
  below the diaphragm, chest from the heart up, the dome slices dropped), in the soft-tissue
  window (the model's inference window) and in a lung window (as MedPix chest images often are).

Never used: ``totalseg_ct/volumes/example_ct*.nii.gz`` and ``totalseg_ct/dicom_series_ct_abdomen``
(the test volumes), nor the MR volume.

The network (timm ``mobilenetv3_small_100``, 1 channel, 64 px, from scratch) is trained with
:func:`radroute.training.api.fit_package`; the package is copied to
``src/radroute/models/bundled/ct-slice-region``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from torch.utils.data import Dataset

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from radroute.data.preprocess import Preprocessing  # noqa: E402
from radroute.io.windowing import window_array  # noqa: E402

CLASSES = ["head", "chest", "abdomen", "pelvis"]
PREPROCESSING = Preprocessing(size=64, keep_aspect=True, window="soft_tissue", mean=0.5, std=0.25)
ARCHITECTURE = "mobilenetv3_small_100"
BUNDLED = REPO / "src" / "radroute" / "models" / "bundled" / "ct-slice-region"

CATEGORY_LABEL = {"Head": "head", "Thorax": "chest", "Abdomen": "abdomen",
                  "Reproductive and Urinary System": "pelvis", "Spine and Muscles": None}
CAPTION_WORDS = {
    "head": r"brain|skull|head ct|orbit|sinus|cerebr|falx|tentorium|temporal bone|intracran",
    "chest": r"lung|pulmonary|chest|thorax|mediastin|pleura|heart|cardiac|atri(um|al)|aortic arch|\brib\b",
    "abdomen": r"kidney|renal|adrenal|nephr|liver|hepat|pancrea|splen|gallbladder|duoden|stomach|"
               r"gastric|mesenter|portal vein|retroperiton|para-aortic",
    "pelvis": r"bladder|prostat|uter(us|ine)|ovar|cervix|cervical (cancer|mass)|pelvi(s|c)\b|scrot|"
              r"acetabul|femoral head|sacr(um|al)|iliac|rectum|rectal|sigmoid|adnex|vagin|testic|"
              r"inguinal|\bhip\b|obturator|pubic|symphysis|endometri",
}
_CAPTION_RE = {k: re.compile(v, re.IGNORECASE) for k, v in CAPTION_WORDS.items()}
TEST_FILES = ("example_ct.nii.gz", "example_ct_sm.nii.gz", "dicom_series_ct_abdomen")


def data_root() -> Path:
    return Path(os.environ.get("RADROUTE_DATA", REPO.parent / "shared" / "data")).resolve()


def medpix_label(category: str, caption: str) -> str | None:
    """The region label of one MedPix axial CT image, or ``None`` to drop it.

    The category's region stands unless the caption names trunk regions that exclude it: then
    the caption's region is used when it names exactly one. Head cases keep ``head`` (captions
    of brain images mention "ventricles", "atrium" ...).
    """
    default = CATEGORY_LABEL.get(category)
    if category == "Head":
        return "head"
    named = {region for region, rx in _CAPTION_RE.items() if rx.search(caption or "")}
    if default is not None and (not named or default in named):
        return default
    if len(named) == 1:
        return named.pop()
    return None


def load_jpeg01(path: Path) -> np.ndarray:
    with PILImage.open(path) as im:
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0


def medpix_samples(root: Path) -> tuple[list[np.ndarray], list[int], list[str], list[str]]:
    images, labels, splits, sources = [], [], [], []
    with open(root / "medpix2" / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["modality"] != "CT" or row["plane"] not in ("Axial", "Transverse"):
                continue
            label = medpix_label(row["location_category"], row["caption"])
            if label is None or row["split"] not in ("train", "dev"):
                continue
            images.append(PREPROCESSING.square(load_jpeg01(root / "medpix2" / row["file"])))
            labels.append(CLASSES.index(label))
            splits.append(row["split"])
            sources.append(row["file"])
    return images, labels, splits, sources


#: per chest volume, counted from its most inferior slice: slices [0, abdomen_end) show liver,
#: stomach, kidneys and no heart (abdomen); slices from chest_start up show heart and lungs
#: (chest); the diaphragm-dome slices in between are dropped. Read off the slices by eye.
CHEST_VOLUMES = {
    "chest_ct_pulmonary_cropped_1p5mm.nii.gz": {"abdomen_end": 11, "chest_start": 22},
    "chest_cta_cropped_1p5mm.nii.gz": {"abdomen_end": 33, "chest_start": 48},
}


def chest_volume_samples(root: Path) -> tuple[list[np.ndarray], list[int], list[str]]:
    """Axial slices of the two TotalSegmentator chest CTs, labelled chest / abdomen by level."""
    import nibabel as nib

    images, labels, sources = [], [], []
    for name, cut in CHEST_VOLUMES.items():
        assert name not in TEST_FILES
        img = nib.as_closest_canonical(nib.load(root / "totalseg_ct" / "volumes" / name))
        # (x, y, z) RAS -> (z, y, x) with anterior at the top and the patient's right on the left
        # (the in-plane orientation radroute.io.read_volume gives); z here runs inferior -> superior.
        hu = np.asarray(img.dataobj, dtype=np.float32).transpose(2, 1, 0)[:, ::-1, ::-1]
        for z in range(hu.shape[0]):
            if z < cut["abdomen_end"]:
                label = "abdomen"
            elif z >= cut["chest_start"]:
                label = "chest"
            else:
                continue
            for window in ("soft_tissue", "lung"):
                images.append(PREPROCESSING.square(window_array(hu[z], window)))
                labels.append(CLASSES.index(label))
                sources.append(f"totalseg_ct/volumes/{name}:{z}:{window}")
    return images, labels, sources


class SliceDataset(Dataset):
    """(S, S) [0, 1] images in memory -> normalised (1, S, S) tensors, augmented for training."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, augment: bool, seed: int = 0):
        self.images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.augment = augment
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.labels)

    def _rand(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.gen))

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        # field of view (zoom in/out), small rotation and shift, left-right flip, contrast/gamma
        scale = self._rand(0.75, 1.3)
        angle = np.deg2rad(self._rand(-12, 12))
        flip = -1.0 if self._rand(0, 1) < 0.5 else 1.0
        cos, sin = np.cos(angle) * scale, np.sin(angle) * scale
        theta = torch.tensor([[cos * flip, -sin, self._rand(-0.08, 0.08)],
                              [sin * flip, cos, self._rand(-0.08, 0.08)]], dtype=torch.float32)
        grid = F.affine_grid(theta[None], [1, 1, *x.shape], align_corners=False)
        x = F.grid_sample(x[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0, 0]
        x = x.clamp(0, 1) ** self._rand(0.7, 1.4)
        x = (x - 0.5) * self._rand(0.8, 1.25) + 0.5 + self._rand(-0.08, 0.08)
        return x.clamp(0, 1)

    def __getitem__(self, i: int):
        x = self.images[i]
        if self.augment:
            x = self._augment(x)
        x = (x - PREPROCESSING.mean) / PREPROCESSING.std
        return x[None], self.labels[i:i + 1]


def validation_lines(region: dict) -> list[str]:
    """Accuracy with its CI, per-class table and confusion matrix from the package metrics."""
    if not region:
        return ["(no validation metrics)"]
    acc = region["accuracy"]
    lines = [f"n = {region['n']}; accuracy {acc['value']:.3f} (95 % CI {acc['ci_low']:.3f}-{acc['ci_high']:.3f}, "
             f"{acc['method']}); macro F1 {region['macro']['f1']['value']:.3f}", "",
             "| class | support | precision | recall | F1 | AUC |", "|---|---|---|---|---|---|"]
    for c in CLASSES:
        m = region["per_class"][c]
        lines.append(f"| {c} | {m['support']} | {m['precision']['value']:.2f} | {m['recall']['value']:.2f} | "
                     f"{m['f1']['value']:.2f} | {m.get('auc') or float('nan'):.2f} |")
    lines += ["", "Confusion matrix (rows: true, columns: predicted; " + ", ".join(CLASSES) + "):", "", "```"]
    lines += [f"{c:>8s} " + " ".join(f"{v:4d}" for v in row) for c, row in zip(CLASSES, region["confusion_matrix"])]
    return lines + ["```"]


def test_volume_lines() -> list[str]:
    """Profiles of the test volumes with the installed model (for the card only)."""
    from radroute.inference.profile import profile_volume

    root = data_root() / "totalseg_ct"
    lines = []
    for label, path in (("example_ct.nii.gz (lung bases to femoral heads, 3 mm)", root / "volumes" / "example_ct.nii.gz"),
                        ("20-slice DICOM series (abdomen, 2 mm)", root / "dicom_series_ct_abdomen")):
        if not path.exists():
            continue
        prof = profile_volume(path, BUNDLED)
        runs = "; ".join(f"{r.name} slices {r.slice_start}-{r.slice_end} (z {r.z_start_mm} to {r.z_end_mm} mm)"
                         for r in prof.regions)
        lines.append(f"* {label}: {runs} -> `{prof.body_part_examined}` / `{prof.body_part}`")
    return lines


def model_card(pkg, counts: dict, metrics: dict) -> str:
    region = metrics.get("region", metrics)
    lines = [
        "# ct-slice-region",
        "",
        "Classifies one **full axial CT slice** into a body region: "
        f"{', '.join(f'`{c}`' for c in CLASSES)}. Used by `radroute profile` to build a slice-by-slice",
        "anatomy profile of a CT volume (after Roth et al. 2015, Fig. 7).",
        "",
        f"* architecture: timm `{ARCHITECTURE}`, 1 channel, {PREPROCESSING.size} px, trained from scratch",
        f"* preprocessing: `{json.dumps(PREPROCESSING.to_dict())}` - HU volumes are windowed with the",
        "  soft-tissue window (40/400) before the model sees them; a 8-bit image is read as /255",
        f"* version (weights hash): `{pkg.version}`; weights {pkg.weights_path.stat().st_size / 1e6:.1f} MB"
        " safetensors + `model.onnx` (ONNX Runtime backend)",
        f"* training: {pkg.training.get('epochs_run')} epochs on 2 shared CPU cores "
        f"({pkg.training.get('train_seconds')} s, stop: {pkg.training.get('stop_reason')}), Adam 2e-3, label smoothing"
        f" 0.1, class-balanced sampling, augmentation (zoom 0.75-1.3, +-12 deg, shift, left-right flip,"
        f" gamma/contrast); weights of the best epoch on MedPix dev ({pkg.training.get('best_epoch')})",
        "* reproduce: `nice -n 10 .venv/bin/python scripts/train_ct_slice_region.py --time-budget-min 30`",
        "",
        "## Training data",
        "",
        "| source | split | " + " | ".join(CLASSES) + " |",
        "|---|---|" + "---|" * len(CLASSES),
    ]
    for (src, split), c in sorted(counts.items()):
        lines.append(f"| {src} | {split} | " + " | ".join(str(c.get(k, 0)) for k in CLASSES) + " |")
    lines += [
        "",
        "* **MedPix 2.0** axial CT teaching JPEGs (NLM MedPix via MedPix-2.0, Siragusa et al. 2025; research",
        "  use, cite the source), case-disjoint `train`/`dev` splits as given. Mapping of `location_category`:",
        "  Head -> head, Thorax -> chest, Abdomen -> abdomen, Reproductive and Urinary System -> pelvis;",
        "  a caption naming exactly one other trunk region overrides it (kidney/adrenal images of the",
        "  urinary category -> abdomen, bladder/prostate/uterus/hip images of the abdomen category ->",
        "  pelvis); Spine and Muscles images only when the caption names one region. MedPix labels are",
        "  per case, so about 5-10 % of the images carry a wrong label.",
        "* **TotalSegmentator** chest CTs (`chest_ct_pulmonary_cropped_1p5mm`, `chest_cta_cropped_1p5mm`,",
        "  CC BY 4.0): axial slices labelled by level (abdomen below the diaphragm: liver, stomach, kidneys;",
        "  chest from the heart up; diaphragm-dome slices dropped), each in the soft-tissue and the lung window.",
        "  They are heart-centred crops, so they also teach a narrower field of view.",
        "* Not used for training or tuning: `example_ct.nii.gz`, `example_ct_sm.nii.gz` and the 20-slice",
        "  DICOM series (the test volumes of `radroute profile`).",
        "",
        "## Regions without training data",
        "",
        "`neck`, `lower_limb`, `upper_limb`, `spine`, `breast` have **no** training data here (no neck or",
        "leg CT volumes in the shared data; MedPix has a handful of bone-window extremity close-ups only):",
        "the model cannot output them. Neck slices will come out as head or chest, thigh slices as pelvis.",
        "Head training images are brain-window teaching images: head slices in the soft-tissue window",
        "are out of the training distribution.",
        "",
        "## Validation (MedPix `dev` split, image level)",
        "",
        *validation_lines(region),
        "",
        "## Test volumes (never used for training or model selection)",
        "",
        "`radroute profile` with this model (soft-tissue window, 15 mm median smoothing, ordered decoding):",
        "",
        *test_volume_lines(),
        "",
        "## Limits",
        "",
        "* Trained on ~1,000 teaching images and two cropped chest volumes: a profile, not a diagnosis.",
        "  `radroute profile` smooths the per-slice probabilities along z and imposes the head-to-feet",
        "  order of regions, which hides many single-slice errors.",
        "* Model selection used the 66 MedPix dev images: a small, noisy validation set.",
        "* Full axial slices only (not coronal/sagittal reformats, not organ crops); CT only: a non-CT",
        "  volume is refused by `radroute profile`.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path.home() / ".cache" / "radroute" / "ct-slice-region-run")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--time-budget-min", type=float, default=None,
                    help="stop after this many minutes (the bundled model: 30, which cut its last epoch short)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-install", action="store_true", help="do not copy into models/bundled")
    ap.add_argument("--install-only", action="store_true",
                    help="skip training: install the package already in --out (card, model.onnx)")
    args = ap.parse_args()

    from radroute.training.api import fit_package
    from radroute.training.trainer import TrainConfig

    torch.manual_seed(args.seed)
    root = data_root()
    mp_images, mp_labels, mp_splits, mp_sources = medpix_samples(root)
    tv_images, tv_labels, tv_sources = chest_volume_samples(root)
    mp_splits_arr = np.array(mp_splits)
    train_x = np.stack([*(im for im, s in zip(mp_images, mp_splits) if s == "train"), *tv_images])
    train_y = np.array([*(y for y, s in zip(mp_labels, mp_splits) if s == "train"), *tv_labels])
    val_x = np.stack([im for im, s in zip(mp_images, mp_splits) if s == "dev"])
    val_y = np.array([y for y, s in zip(mp_labels, mp_splits) if s == "dev"])

    counts: dict = {}
    for src, ys, splits in (("MedPix 2.0 axial CT", mp_labels, mp_splits),
                            ("TotalSegmentator chest CT slices x 2 windows", tv_labels, ["train"] * len(tv_labels))):
        for y, s in zip(ys, splits):
            counts.setdefault((src, s), Counter())[CLASSES[y]] += 1
    for k, c in counts.items():
        print(k, dict(c), flush=True)

    # balance classes: each class weighs the same per epoch; MedPix and volume slices half-half for chest
    freq = np.bincount(train_y, minlength=len(CLASSES)).astype(float)
    weights = 1.0 / freq[train_y]
    n_mp_train = int((mp_splits_arr == "train").sum())
    weights[n_mp_train:] *= 0.5  # the ~500 volume slices are highly correlated: count them half

    args.out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(epochs=args.epochs, batch_size=64, optimizer="adam", lr=2e-3, weight_decay=1e-4,
                         patience=12, seed=args.seed, workers=0, precision="fp32", channels_last=False,
                         device="cpu", time_budget_min=args.time_budget_min, label_smoothing=0.1,
                         progress=False)
    data = {
        "sources": ["medpix2 (axial CT, train/dev)", "totalseg_ct chest_ct_pulmonary_cropped_1p5mm",
                    "totalseg_ct chest_cta_cropped_1p5mm"],
        "label_mapping": {"medpix location_category": {k: v for k, v in CATEGORY_LABEL.items()},
                          "caption_words": CAPTION_WORDS,
                          "totalseg slices (from the most inferior slice)": CHEST_VOLUMES},
        "counts": {f"{k[0]} [{k[1]}]": dict(v) for k, v in counts.items()},
        "excluded_test_data": list(TEST_FILES),
    }
    if not args.install_only:
        pkg = fit_package(ARCHITECTURE, {"region": CLASSES},
                          SliceDataset(train_x, train_y, augment=True, seed=args.seed),
                          SliceDataset(val_x, val_y, augment=False), PREPROCESSING, args.out, config,
                          name="ct-slice-region", sample_weights=weights.tolist(), data=data,
                          body_part_map={"region": {c: c for c in CLASSES}})
        print(json.dumps(pkg.metrics, indent=1)[:2000])
    if args.no_install:
        return
    install(args.out, counts)


def install(run_dir: Path, counts: dict) -> None:
    """Copy the trained package into models/bundled, export model.onnx, write MODEL_CARD.md."""
    from radroute.inference.onnx import ONNX_BESIDE, export_onnx
    from radroute.models.package import ModelPackage

    BUNDLED.mkdir(parents=True, exist_ok=True)
    for name in ("radroute.json", "weights.safetensors"):
        shutil.copy2(run_dir / name, BUNDLED / name)
    installed = ModelPackage.load(BUNDLED)
    export_onnx(installed, BUNDLED / ONNX_BESIDE)
    (BUNDLED / "MODEL_CARD.md").write_text(model_card(installed, counts, installed.metrics))
    print("installed", BUNDLED, installed.version)


if __name__ == "__main__":
    main()
