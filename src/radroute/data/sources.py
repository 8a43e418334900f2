"""Dataset sources -> :class:`~radroute.data.manifest.Manifest`.

Generic layouts: a folder per class (:func:`from_folders`), a CSV manifest (:func:`from_csv`),
a MedMNIST-style ``.npz`` (:func:`from_npz`), DICOM files with a label CSV keyed by path or
SOPInstanceUID (:func:`from_dicom_labels`). Public sets in the layout their publishers ship:
:func:`from_medmnist`, :func:`from_vindr_bodypartxr`, :func:`from_unifesp`; and the shared sets
the bundled models are trained on (:func:`load_shared`). :func:`load_source` picks one by path.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from radroute.data.manifest import NPZ_PREFIX, Manifest, Sample, build_tasks, normalise_split
from radroute.errors import InvalidConfigError, RadrouteError

#: the 22 classes of the UNIFESP X-ray Body Part Classifier (Kaggle), by class id
UNIFESP_CLASSES = [
    "Abdomen", "Ankle", "Cervical Spine", "Chest", "Clavicles", "Elbow", "Feet", "Finger",
    "Forearm", "Hand", "Hip", "Knee", "Lower Leg", "Lumbar Spine", "Others", "Pelvis",
    "Shoulder", "Sinus", "Skull", "Thigh", "Thoracic Spine", "Wrist",
]

_NOT_LABELS = {"path", "file", "filename", "patient_id", "patientid", "split", "frame"}


def _find_files(root: Path) -> list[Path]:
    try:
        from radroute.io import find_files
    except ImportError:  # the package may not re-export it yet
        from radroute.io.files import find_files
    return list(find_files(root, recursive=True))


def _clean(value: Any) -> str | None:
    if value is None:
        return None
    s = str(value).strip()
    return None if s == "" or s.lower() in ("nan", "none", "null") else s


def _origin(reader: str, path: Path | str, **options: Any) -> dict[str, Any]:
    return {"reader": reader, "path": str(path), **{k: v for k, v in options.items() if v is not None}}


# ---------------------------------------------------------------------------------------------
# a folder per class
# ---------------------------------------------------------------------------------------------
def from_folders(root: str | Path, *, task: str = "label",
                 classes: Sequence[str] | None = None) -> Manifest:
    """``root/<class>/**`` (any depth below the class folder) -> Manifest.

    When every sub-folder of ``root`` is a split name (``train``, ``val``, ``dev``, ``test``, ...)
    the layout is ``root/<split>/<class>/**`` and the splits are kept. Only files radroute can
    read (recognised by their first bytes) are taken; the patient is unknown.
    """
    root = Path(root).resolve()
    if not root.is_dir():
        raise InvalidConfigError(f"not a folder: {root}", root)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    split_level = bool(subdirs) and all(_is_split_name(p.name) for p in subdirs)
    parts = [(normalise_split(d.name), d) for d in subdirs] if split_level else [(None, root)]
    samples = []
    for split, base in parts:
        for class_dir in sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for f in _find_files(class_dir):
                samples.append(Sample(str(f), {task: class_dir.name}, None, split))
    if not samples:
        raise InvalidConfigError(f"no images found in class folders under {root}", root)
    return Manifest(samples, build_tasks(samples, {task: classes} if classes else None, [task]),
                    root=str(root), origin=_origin("folders", root))


def _is_split_name(name: str) -> bool:
    try:
        return normalise_split(name) is not None
    except InvalidConfigError:
        return False


# ---------------------------------------------------------------------------------------------
# CSV manifests
# ---------------------------------------------------------------------------------------------
def parse_filters(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, tuple[set[str], bool]]:
    """``["modality==X-ray", "view!=other", "plane==Axial|Coronal"]`` or ``{"modality": "X-ray"}``
    -> ``{column: (values, keep_if_equal)}``."""
    out: dict[str, tuple[set[str], bool]] = {}
    if not items:
        return out
    if isinstance(items, Mapping):
        for col, val in items.items():
            vals = val if isinstance(val, (list, tuple, set)) else [val]
            out[col] = ({str(v) for v in vals}, True)
        return out
    for item in items:
        for op, keep in (("!=", False), ("==", True)):
            if op in item:
                col, val = item.split(op, 1)
                out[col.strip()] = ({v.strip() for v in val.split("|")}, keep)
                break
        else:
            raise InvalidConfigError(f"filter {item!r} is not COLUMN==VALUE or COLUMN!=VALUE")
    return out


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except OSError as exc:
        raise InvalidConfigError(f"cannot read CSV: {exc}", path) from exc


def _pick(columns: Sequence[str], wanted: str | None, *fallbacks: str) -> str | None:
    lower = {c.lower(): c for c in columns}
    for name in (wanted, *fallbacks):
        if name and name.lower() in lower:
            return lower[name.lower()]
    return None


def from_csv(path: str | Path, *, path_column: str = "path",
             label_columns: Mapping[str, str] | Sequence[str] | None = None,
             patient_column: str | None = "patient_id", split_column: str | None = "split",
             frame_column: str | None = "frame", root: str | Path | None = None,
             filters: Iterable[str] | Mapping[str, Any] | None = None,
             classes: Mapping[str, Sequence[str]] | None = None,
             check_exists: bool = True) -> Manifest:
    """A CSV with one row per image -> Manifest.

    ``path_column`` (also found as ``file``/``filename``) holds paths relative to ``root``
    (default: the CSV's folder). ``label_columns`` maps task -> column (a list means
    task = column); by default every other column is a task, a column named ``label`` included.
    Empty cells are missing labels. Optional ``patient_column``, ``split_column`` (``dev`` ->
    ``val``) and ``frame_column``; ``filters`` keep rows (``["modality==X-ray"]``).
    """
    path = Path(path).resolve()
    columns, rows = _read_csv(path)
    root = Path(root).resolve() if root is not None else path.parent
    pcol = _pick(columns, path_column, "path", "file", "filename")
    if pcol is None:
        raise InvalidConfigError(f"{path.name}: no path column {path_column!r} in {columns}", path)
    patient = _pick(columns, patient_column, "patient_id", "patientid") if patient_column else None
    split = _pick(columns, split_column) if split_column else None
    frame = _pick(columns, frame_column) if frame_column else None
    if label_columns is None:
        used = {c for c in (pcol, patient, split, frame) if c}
        label_columns = {c: c for c in columns if c not in used and c.lower() not in _NOT_LABELS}
    elif not isinstance(label_columns, Mapping):
        label_columns = {c: c for c in label_columns}
    keep = parse_filters(filters)
    missing = [c for c in [*label_columns.values(), *keep] if c not in columns]
    if missing:
        raise InvalidConfigError(f"{path.name}: columns {missing} not in {columns}", path)
    if not label_columns:
        raise InvalidConfigError(f"{path.name}: no label column", path)
    samples = []
    for row in rows:
        if any(((row.get(c) or "").strip() in vals) != want for c, (vals, want) in keep.items()):
            continue
        src = _clean(row.get(pcol))
        if src is None:
            continue
        f = Path(src)
        f = f if f.is_absolute() else root / f
        if check_exists and not f.exists():
            raise InvalidConfigError(f"{path.name}: listed file does not exist: {f}", f)
        labels = {t: v for t, c in label_columns.items() if (v := _clean(row.get(c))) is not None}
        fr = _clean(row.get(frame)) if frame else None
        samples.append(Sample(str(f), labels, _clean(row.get(patient)) if patient else None,
                              normalise_split(row.get(split)) if split else None,
                              int(float(fr)) if fr is not None else None))
    if not samples:
        raise InvalidConfigError(f"{path.name}: no rows left after filtering", path)
    tasks = build_tasks(samples, classes, list(label_columns))
    return Manifest(samples, tasks, root=str(root),
                    origin=_origin("csv", path, label_columns=dict(label_columns),
                                   filters=_filter_strings(keep)))


def _filter_strings(keep: dict[str, tuple[set[str], bool]]) -> list[str] | None:
    return [f"{c}{'==' if want else '!='}{'|'.join(sorted(v))}" for c, (v, want) in keep.items()] or None


def write_csv(manifest: Manifest, path: str | Path) -> Path:
    """Write ``manifest`` as a CSV that :func:`from_csv` reads back (file sources only).

    Columns: ``path`` (relative to the CSV's folder when below it), ``frame``, ``patient_id``,
    ``split`` and one column per task.
    """
    path = Path(path).resolve()
    if manifest.npz:
        raise InvalidConfigError("a .npz manifest cannot be written as CSV; keep the .npz", path)
    tasks = list(manifest.tasks)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "frame", "patient_id", "split", *tasks])
        for s in manifest.samples:
            p = Path(s.source)
            try:
                p = p.relative_to(path.parent)
            except ValueError:
                pass
            w.writerow([p.as_posix(), "" if s.frame is None else s.frame, s.patient_id or "",
                        s.split or "", *[s.labels.get(t, "") for t in tasks]])
    return path


# ---------------------------------------------------------------------------------------------
# MedMNIST-style .npz
# ---------------------------------------------------------------------------------------------
def from_npz(path: str | Path, *, task: str = "label",
             classes: Sequence[str] | Mapping[str, str] | str | Path | None = None) -> Manifest:
    """A MedMNIST-style ``.npz`` (``train_images``, ``train_labels``, ``val_*``, ``test_*``).

    Samples are ``npz:<key>:<index>`` with the split taken from ``<key>``. Class names come from
    ``classes`` (a list, an ``{"0": name}`` mapping, or a JSON file with either), else from a
    ``classes.json`` beside the file, else the label numbers. Multi-column (multi-label) label
    arrays use their first column.
    """
    path = Path(path).resolve()
    try:
        with np.load(path, mmap_mode="r") as z:
            keys = [k[: -len("_images")] for k in z.files if k.endswith("_images")]
            labels = {k: np.asarray(z[f"{k}_labels"]).reshape(len(z[f"{k}_labels"]), -1)[:, 0]
                      for k in keys if f"{k}_labels" in z.files}
    except (OSError, ValueError, KeyError) as exc:
        raise InvalidConfigError(f"cannot read .npz: {exc}", path) from exc
    if not labels:
        raise InvalidConfigError(f"no <split>_images/<split>_labels arrays in {path.name}", path)
    if classes is None and (path.parent / "classes.json").exists():
        classes = path.parent / "classes.json"
    names = _class_names(classes, max(int(v.max()) for v in labels.values()) + 1)
    order = sorted(labels, key=lambda k: ("train", "val", "test").index(k) if k in ("train", "val", "test") else 9)
    samples = []
    for key in order:
        split = normalise_split(key) if _is_split_name(key) else None
        samples += [Sample(f"{NPZ_PREFIX}{key}:{i}", {task: names[int(v)]}, None, split)
                    for i, v in enumerate(labels[key])]
    return Manifest(samples, {task: names}, npz=str(path), root=str(path.parent),
                    origin=_origin("npz", path))


def _class_names(classes: Any, n: int) -> list[str]:
    if isinstance(classes, (str, Path)):
        classes = json.loads(Path(classes).read_text())
    if classes is None:
        return [str(i) for i in range(n)]
    if isinstance(classes, Mapping):
        classes = [classes[str(i)] if str(i) in classes else classes[i] for i in range(len(classes))]
    names = [str(c) for c in classes]
    if len(names) < n:
        raise InvalidConfigError(f"{len(names)} class names for labels up to {n - 1}")
    return names


def load_npz_images(npz: str | Path, sources: Sequence[str]) -> np.ndarray:
    """The arrays behind ``npz:<key>:<index>`` sources, in order: (N, H, W) as stored."""
    keyed: dict[str, list[tuple[int, int]]] = {}
    for pos, s in enumerate(sources):
        _, key, idx = s.split(":")
        keyed.setdefault(key, []).append((pos, int(idx)))
    with np.load(npz) as z:
        first = z[f"{next(iter(keyed))}_images"]
        out = np.empty((len(sources), *first.shape[1:3]), first.dtype)
        for key, pairs in keyed.items():
            arr = z[f"{key}_images"]
            pos, idx = np.array(pairs).T
            imgs = arr[idx]
            out[pos] = imgs if imgs.ndim == 3 else imgs.mean(axis=-1).astype(arr.dtype)  # RGB sets
    return out


def from_medmnist(path: str | Path, *, task: str = "label",
                  classes: Sequence[str] | Mapping[str, str] | str | Path | None = None) -> Manifest:
    """A MedMNIST download (``<flag>.npz`` or ``<flag>_<size>.npz``): :func:`from_npz`, class
    names from ``classes``, a ``classes.json`` beside it, or the ``medmnist`` package's INFO."""
    path = Path(path)
    if classes is None and not (path.parent / "classes.json").exists():
        try:  # optional: the medmnist package knows every flag's label names
            from medmnist import INFO  # type: ignore[import-not-found]

            flag = path.stem.split("_")[0]
            classes = INFO[flag]["label"] if flag in INFO else None
        except ImportError:
            classes = None
    m = from_npz(path, task=task, classes=classes)
    m.origin["reader"] = "medmnist"
    return m


# ---------------------------------------------------------------------------------------------
# DICOM files + a label CSV
# ---------------------------------------------------------------------------------------------
def _header(path: Path) -> tuple[str | None, str | None]:
    """(SOPInstanceUID, StudyInstanceUID) of a DICOM file, ``(None, None)`` when unreadable."""
    try:
        from radroute.io import read_header
    except ImportError:
        read_header = None
    try:
        if read_header is not None:
            meta = read_header(path)
            return meta.sop_instance_uid, meta.study_instance_uid
        import pydicom

        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True,
                             specific_tags=["SOPInstanceUID", "StudyInstanceUID"])
        return ds.get("SOPInstanceUID"), ds.get("StudyInstanceUID")
    except (RadrouteError, OSError, ValueError, AttributeError, EOFError):
        return None, None


def from_dicom_labels(root: str | Path, labels_csv: str | Path, *,
                      key_column: str | None = None,
                      label_columns: Mapping[str, str] | Sequence[str] | None = None,
                      patient_column: str | None = "patient_id", split_column: str | None = "split",
                      filters: Iterable[str] | Mapping[str, Any] | None = None,
                      classes: Mapping[str, Sequence[str]] | None = None) -> Manifest:
    """DICOM files under ``root`` labelled by a CSV keyed by path or SOPInstanceUID.

    ``key_column`` defaults to ``path``/``file`` when present (paths relative to ``root``), else
    ``SOPInstanceUID``/``sop_instance_uid``: then every DICOM file under ``root`` has its header
    read (no pixels) and is matched by UID. Rows whose file is not found are skipped and counted
    in ``origin["unmatched"]``. Without a patient column, the StudyInstanceUID groups the splits.
    """
    root = Path(root).resolve()
    labels_csv = Path(labels_csv).resolve()
    columns, rows = _read_csv(labels_csv)
    key = _pick(columns, key_column, "path", "file", "filename", "SOPInstanceUID", "sop_instance_uid")
    if key is None:
        raise InvalidConfigError(f"{labels_csv.name}: no path or SOPInstanceUID column in {columns}", labels_csv)
    if key.lower() in ("path", "file", "filename"):
        m = from_csv(labels_csv, path_column=key, label_columns=label_columns,
                     patient_column=patient_column, split_column=split_column, root=root,
                     filters=filters, classes=classes)
        m.origin.update(reader="dicom_labels", key=key)
        return m
    by_uid: dict[str, tuple[Path, str | None]] = {}
    for f in _find_files(root):
        uid, study = _header(f)
        if uid:
            by_uid[str(uid)] = (f, str(study) if study else None)
    patient = _pick(columns, patient_column, "patient_id", "patientid") if patient_column else None
    split = _pick(columns, split_column) if split_column else None
    if label_columns is None:
        used = {c for c in (key, patient, split) if c}
        label_columns = {c: c for c in columns if c not in used and c.lower() not in _NOT_LABELS}
    elif not isinstance(label_columns, Mapping):
        label_columns = {c: c for c in label_columns}
    keep = parse_filters(filters)
    samples, unmatched = [], 0
    for row in rows:
        if any(((row.get(c) or "").strip() in vals) != want for c, (vals, want) in keep.items()):
            continue
        hit = by_uid.get((row.get(key) or "").strip())
        if hit is None:
            unmatched += 1
            continue
        f, study = hit
        labels = {t: v for t, c in label_columns.items() if (v := _clean(row.get(c))) is not None}
        pid = (_clean(row.get(patient)) if patient else None) or study
        samples.append(Sample(str(f), labels, pid, normalise_split(row.get(split)) if split else None))
    if not samples:
        raise InvalidConfigError(f"no row of {labels_csv.name} matched a DICOM file under {root}", root)
    return Manifest(samples, build_tasks(samples, classes, list(label_columns)), root=str(root),
                    origin=_origin("dicom_labels", labels_csv, key=key, unmatched=unmatched))


# ---------------------------------------------------------------------------------------------
# public sets in their published layouts
# ---------------------------------------------------------------------------------------------
def from_vindr_bodypartxr(root: str | Path, *, task: str = "body_part") -> Manifest:
    """VinDr-BodyPartXR as downloaded from PhysioNet: ``<root>/{train,test}/<class>/*.dicom``
    (class folder names are kept as class names). Split ``test`` stays the test set."""
    m = from_folders(root, task=task)
    m.origin["reader"] = "vindr_bodypartxr"
    return m


def from_unifesp(root: str | Path, *, task: str = "body_part", multi_label: str = "skip") -> Manifest:
    """The UNIFESP X-ray Body Part Classifier (Kaggle) download: ``train.csv`` with
    ``SOPInstanceUID,Target`` (space-separated class ids) and DICOMs at
    ``train/<study>/<series>/<SOPInstanceUID>-c.dcm``.

    Class ids become :data:`UNIFESP_CLASSES` names. Rows with several ids are skipped
    (``multi_label="skip"``, counted in ``origin["multi_label_rows"]``) or take their first id
    (``"first"``). The study folder is the patient group. The Kaggle test set has no labels.
    """
    if multi_label not in ("skip", "first"):
        raise InvalidConfigError(f"multi_label must be 'skip' or 'first', not {multi_label!r}")
    root = Path(root).resolve()
    columns, rows = _read_csv(root / "train.csv")
    if "SOPInstanceUID" not in columns or "Target" not in columns:
        raise InvalidConfigError(f"train.csv needs SOPInstanceUID and Target columns, has {columns}", root)
    files = {}
    for f in (root / "train").rglob("*.dcm"):
        files[f.stem.removesuffix("-c")] = f
    samples, multi, unmatched = [], 0, 0
    for row in rows:
        ids = (row["Target"] or "").split()
        if not ids:
            continue
        if len(ids) > 1:
            multi += 1
            if multi_label == "skip":
                continue
        f = files.get(row["SOPInstanceUID"].strip())
        if f is None:
            unmatched += 1
            continue
        study = f.relative_to(root / "train").parts[0] if len(f.relative_to(root / "train").parts) > 1 else None
        samples.append(Sample(str(f), {task: UNIFESP_CLASSES[int(ids[0])]}, study, None))
    if not samples:
        raise InvalidConfigError(f"no labelled DICOM found under {root / 'train'}", root)
    return Manifest(samples, {task: list(UNIFESP_CLASSES)}, root=str(root),
                    origin=_origin("unifesp", root, multi_label=multi_label,
                                   multi_label_rows=multi, unmatched=unmatched))


# ---------------------------------------------------------------------------------------------
# shared sets used to train the bundled models
# ---------------------------------------------------------------------------------------------
#: ``from_csv`` options for the shared sets in ``$RADROUTE_DATA`` (see docs/data.md)
SHARED_SETS: dict[str, dict[str, Any]] = {
    "medpix2": {"csv": "medpix2/labels.csv", "path_column": "file",
                "label_columns": {"modality": "modality", "region": "location_category", "plane": "plane"},
                "patient_column": "case_id", "split_column": "split"},
    "chest_views": {"csv": "chest_views/labels.csv", "path_column": "file",
                    "label_columns": {"view": "view_group"}, "patient_column": "patientid",
                    "split_column": None, "filters": ["modality==X-ray"]},
    "organamnist": {"npz": "organamnist/organamnist_trainval.npz"},
}


def data_root() -> Path:
    """``$RADROUTE_DATA``, else ``../shared/data`` beside the repository / working folder."""
    import os

    env = os.environ.get("RADROUTE_DATA")
    if env:
        return Path(env).resolve()
    repo = Path(__file__).resolve().parents[3]
    for cand in (repo.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if cand.exists():
            return cand.resolve()
    return (repo.parent / "shared" / "data").resolve()


def load_shared(name: str, root: str | Path | None = None, **overrides: Any) -> Manifest:
    """One of :data:`SHARED_SETS` from the data root; ``overrides`` replace ``from_csv`` options
    (e.g. ``filters=["modality==CT"]``, ``label_columns={"plane": "plane"}``)."""
    if name not in SHARED_SETS:
        raise InvalidConfigError(f"unknown shared set {name!r}; known: {sorted(SHARED_SETS)}")
    root = Path(root) if root is not None else data_root()
    opts = {**SHARED_SETS[name], **overrides}
    if "npz" in opts:
        return from_npz(root / opts.pop("npz"), **opts)
    m = from_csv(root / opts.pop("csv"), **opts)
    m.origin["shared_set"] = name
    return m


# ---------------------------------------------------------------------------------------------
# dispatch
# ---------------------------------------------------------------------------------------------
def load_source(path: str | Path, **options: Any) -> Manifest:
    """Pick the reader from the path: a shared-set name (``medpix2``), a ``.npz``, a ``.csv``
    manifest, a saved ``.json`` manifest, a UNIFESP download (has ``train.csv`` + ``train/``),
    or a folder per class."""
    p = Path(path)
    if not p.exists() and str(path) in SHARED_SETS:
        return load_shared(str(path), **options)
    if not p.exists():
        raise InvalidConfigError(f"dataset not found: {p}", p)
    if p.suffix == ".npz":
        return from_npz(p, **options)
    if p.suffix == ".csv":
        return from_csv(p, **options)
    if p.suffix == ".json":
        return Manifest.load(p)
    if p.is_dir() and (p / "train.csv").exists() and (p / "train").is_dir():
        return from_unifesp(p, **options)
    return from_folders(p, **options)
