from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from radroute.data.manifest import Manifest
from radroute.data.sources import (
    UNIFESP_CLASSES, from_csv, from_dicom_labels, from_folders, from_medmnist, from_npz,
    from_unifesp, from_vindr_bodypartxr, load_shared, load_source, parse_filters, write_csv,
)
from radroute.errors import InvalidConfigError
from tests.data.conftest import write_dicom_copy
from tests.helpers import need_data


def _write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_folder_per_class(class_folders):
    (class_folders / "head" / "notes.txt").write_text("not an image")
    m = from_folders(class_folders)
    assert m.tasks == {"label": ["abdomen", "head", "thorax"]}
    assert len(m) == 12 and all(Path(s.source).suffix == ".jpg" for s in m.samples)
    assert m.class_counts() == {"abdomen": 4, "head": 4, "thorax": 4}
    assert all(s.split is None and s.patient_id is None for s in m.samples)
    y = m.label_matrix()
    assert y.shape == (12, 1) and y.dtype == np.int64
    assert [m.tasks["label"][i] for i in y[:, 0]] == [Path(s.source).parent.name for s in m.samples]
    assert load_source(class_folders).tasks == m.tasks


def test_folder_with_split_level(tmp_path, medpix_images):
    for i, f in enumerate(medpix_images[:8]):
        split = ("train", "dev")[i % 2]
        cls = ("a", "b")[(i // 2) % 2]
        (tmp_path / split / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, tmp_path / split / cls / f.name)
    m = from_folders(tmp_path)
    assert m.tasks == {"label": ["a", "b"]}
    assert {s.split for s in m.samples} == {"train", "val"}  # dev -> val


def test_csv_manifest_multi_task_missing_labels_and_splits(tmp_path, medpix_images):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rows = []
    for i, f in enumerate(medpix_images[:6]):
        shutil.copy(f, imgs / f.name)
        rows.append([f"imgs/{f.name}", ("ct", "mr")[i % 2], f"p{i // 2}", ("train", "dev", "")[i % 3],
                     "" if i == 5 else ("axial", "coronal")[i % 2]])
    csv_path = _write_csv(tmp_path / "manifest.csv", ["path", "label", "patient_id", "split", "plane"], rows)
    m = from_csv(csv_path)
    assert m.tasks == {"label": ["ct", "mr"], "plane": ["axial", "coronal"]}
    assert [s.patient_id for s in m.samples] == ["p0", "p0", "p1", "p1", "p2", "p2"]
    assert [s.split for s in m.samples] == ["train", "val", None, "train", "val", None]
    assert all(Path(s.source).is_file() for s in m.samples)
    y = m.label_matrix()
    assert y[5].tolist() == [1, -1]  # missing plane
    # explicit task -> column mapping and a filter
    m2 = from_csv(csv_path, label_columns={"modality": "label"}, filters=["label==mr"])
    assert m2.tasks == {"modality": ["mr"]} and len(m2) == 3
    # write + read back gives the same samples
    back = from_csv(write_csv(m, tmp_path / "again.csv"))
    assert [(s.source, s.labels, s.patient_id, s.split) for s in back.samples] == \
           [(s.source, s.labels, s.patient_id, s.split) for s in m.samples]


def test_csv_errors(tmp_path):
    bad = _write_csv(tmp_path / "m.csv", ["path", "label"], [["missing.png", "a"]])
    with pytest.raises(InvalidConfigError, match="does not exist"):
        from_csv(bad)
    nopath = _write_csv(tmp_path / "n.csv", ["image", "label"], [["x", "a"]])
    with pytest.raises(InvalidConfigError, match="no path column"):
        from_csv(nopath)
    with pytest.raises(InvalidConfigError):
        parse_filters(["modality X-ray"])
    assert parse_filters(["plane==Axial|Coronal", "x!=y"]) == {"plane": ({"Axial", "Coronal"}, True),
                                                               "x": ({"y"}, False)}


@pytest.fixture()
def small_npz(tmp_path) -> Path:
    src = need_data("organamnist")
    with np.load(src / "organamnist_trainval.npz") as z:
        arrays = {"train_images": z["train_images"][:40], "train_labels": z["train_labels"][:40],
                  "val_images": z["val_images"][:15], "val_labels": z["val_labels"][:15]}
    path = tmp_path / "organamnist_small.npz"
    np.savez(path, **arrays)
    shutil.copy(src / "classes.json", tmp_path / "classes.json")
    return path


def test_npz_medmnist_layout(small_npz):
    m = from_npz(small_npz)
    names = json.loads((small_npz.parent / "classes.json").read_text())
    assert m.tasks == {"label": [names[str(i)] for i in range(11)]}
    assert len(m) == 55 and m.npz == str(small_npz.resolve())
    assert m.samples[0].source == "npz:train:0" and m.samples[40].source == "npz:val:0"
    assert [s.split for s in m.samples].count("val") == 15
    with np.load(small_npz) as z:
        np.testing.assert_array_equal(m.label_matrix()[:40, 0], z["train_labels"][:, 0])
    (small_npz.parent / "classes.json").unlink()
    assert from_medmnist(small_npz).tasks["label"][:3] == ["0", "1", "2"]  # no names: numbers
    assert load_source(small_npz, classes=[f"c{i}" for i in range(11)]).tasks["label"][0] == "c0"


def test_dicom_folder_keyed_by_sop_instance_uid(tmp_path):
    root = tmp_path / "dicoms"
    rows = []
    for i in range(6):
        src = ("CT_small.dcm", "MR_small.dcm")[i % 2]
        uid = write_dicom_copy(root / f"s{i // 3}" / f"img{i}", src, patient=f"pat{i // 3}")
        rows.append([uid, ("ct", "mr")[i % 2]])
    rows.append(["1.2.3.4.does.not.exist", "ct"])
    (root / "README.txt").write_text("not dicom")
    labels = _write_csv(tmp_path / "labels.csv", ["SOPInstanceUID", "modality"], rows)
    m = from_dicom_labels(root, labels)
    assert m.tasks == {"modality": ["ct", "mr"]}
    assert len(m) == 6 and m.origin["unmatched"] == 1
    import pydicom

    for s in m.samples:
        ds = pydicom.dcmread(s.source)
        assert s.labels["modality"] == ds.Modality.lower()
        assert s.patient_id == ds.StudyInstanceUID  # no patient column: the study groups


def test_dicom_folder_keyed_by_path(tmp_path):
    root = tmp_path / "d"
    write_dicom_copy(root / "a.dcm", "CT_small.dcm")
    write_dicom_copy(root / "sub" / "b.dcm", "MR_small.dcm")
    labels = _write_csv(tmp_path / "labels.csv", ["path", "label", "patient_id"],
                        [["a.dcm", "ct", "1"], ["sub/b.dcm", "mr", "2"]])
    m = from_dicom_labels(root, labels)
    assert [Path(s.source).name for s in m.samples] == ["a.dcm", "b.dcm"]
    assert [s.patient_id for s in m.samples] == ["1", "2"]


def test_vindr_bodypartxr_layout(tmp_path):
    for split, n in (("train", 4), ("test", 2)):
        for cls in ("abdominal", "adult", "spine"):
            for i in range(n):
                write_dicom_copy(tmp_path / split / cls / f"{cls}{i}.dicom", "CT_small.dcm")
    m = from_vindr_bodypartxr(tmp_path)
    assert m.tasks == {"body_part": ["abdominal", "adult", "spine"]}
    assert len(m) == 18 and sum(s.split == "test" for s in m.samples) == 6
    assert all(s.source.endswith(".dicom") for s in m.samples)


def test_unifesp_layout(tmp_path):
    rows = []
    for i, target in enumerate(["3", "11", "3 14", "21", "0"]):
        study, series = f"1.2.826.{i % 2}", f"1.2.826.{i % 2}.1"
        uid = write_dicom_copy(tmp_path / "tmp" / f"{i}.dcm", "CT_small.dcm")
        dest = tmp_path / "train" / study / series / f"{uid}-c.dcm"
        dest.parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "tmp" / f"{i}.dcm").rename(dest)
        rows.append([uid, target])
    _write_csv(tmp_path / "train.csv", ["SOPInstanceUID", "Target"], rows)
    m = from_unifesp(tmp_path)
    assert m.tasks["body_part"] == UNIFESP_CLASSES and len(UNIFESP_CLASSES) == 22
    assert [s.labels["body_part"] for s in m.samples] == ["Chest", "Knee", "Wrist", "Abdomen"]
    assert m.origin["multi_label_rows"] == 1
    assert [s.patient_id for s in m.samples] == ["1.2.826.0", "1.2.826.1", "1.2.826.1", "1.2.826.0"]
    first = from_unifesp(tmp_path, multi_label="first")
    assert len(first) == 5 and first.samples[2].labels["body_part"] == "Chest"
    assert load_source(tmp_path).origin["reader"] == "unifesp"


def test_shared_sets():
    need_data("medpix2", "labels.csv")
    need_data("chest_views", "labels.csv")
    mp = load_shared("medpix2")
    assert set(mp.tasks) == {"modality", "region", "plane"} and mp.tasks["modality"] == ["CT", "MR"]
    assert {s.split for s in mp.samples} == {"train", "val"}
    patients = {}
    for s in mp.samples:
        patients.setdefault(s.patient_id, set()).add(s.split)
    assert all(len(v) == 1 for v in patients.values())  # MedPix splits are case-disjoint
    cv = load_shared("chest_views")
    assert cv.tasks == {"view": ["frontal", "lateral"]} and cv.class_counts() == {"frontal": 408, "lateral": 25}
    ct = load_shared("chest_views", filters=["modality==CT"])
    assert ct.tasks == {"view": ["ct_axial", "ct_coronal"]}


def test_manifest_save_load_and_validation(tmp_path, class_folders):
    m = from_folders(class_folders)
    back = Manifest.load(m.save(tmp_path / "m.json"))
    assert back.tasks == m.tasks and back.samples == m.samples
    assert back.fingerprint() == m.fingerprint()
    back.samples[0].labels["label"] = "head" if back.samples[0].labels["label"] != "head" else "thorax"
    assert back.fingerprint() != m.fingerprint()
    with pytest.raises(InvalidConfigError):
        Manifest(m.samples, {"label": ["head"]})
    two = Manifest(m.samples[:2] + [m.samples[2].__class__("x.png", {})], m.tasks)
    assert len(two.with_tasks(["label"])) == 2
    with pytest.raises(InvalidConfigError):
        m.with_tasks(["nope"])
    d = m.describe()
    assert d["n"] == 12 and d["splits"]["unassigned"]["classes"]["label"]["head"] == 4
