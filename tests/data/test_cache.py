from __future__ import annotations

import json
import pickle
import shutil

import numpy as np
import pytest

from radroute.data.cache import build_cache, cache_key
from radroute.data.preprocess import Preprocessing
from radroute.data.sources import from_csv, from_folders, from_npz
from tests.data.conftest import write_dicom_copy
from tests.helpers import need_data

pytest.importorskip("radroute.io", reason="radroute.io not importable")


@pytest.fixture()
def mixed_folder(class_folders):
    """Real JPEGs, two real DICOMs, a truncated DICOM and a JPEG header with no image."""
    write_dicom_copy(class_folders / "head" / "ct.dcm", "CT_small.dcm")
    write_dicom_copy(class_folders / "thorax" / "mr.dcm", "MR_small.dcm")
    good = class_folders / "abdomen" / "trunc.dcm"
    write_dicom_copy(good, "CT_small.dcm")
    good.write_bytes(good.read_bytes()[:2000])  # header fine, pixel data cut
    (class_folders / "thorax" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 64)
    return class_folders


def test_cache_decodes_records_errors_and_matches_preprocessing(tmp_path, mixed_folder):
    m = from_folders(mixed_folder)
    pre = Preprocessing(size=32)
    cache = build_cache(m, pre, tmp_path / "cache", workers=0, progress=False)
    bad = {e["source"].rsplit("/", 1)[-1] for e in cache.errors}
    assert bad == {"trunc.dcm", "broken.jpg"}
    assert all(e["error"]["type"] and e["error"]["message"] for e in cache.errors)
    assert cache.ok.sum() == len(m) - 2 and cache.images.shape == (len(m), 32, 32)
    assert cache.images.dtype == np.uint8
    for i in np.flatnonzero(cache.ok)[:4]:
        s = m.samples[i]
        expected = pre.square(pre.read(s.source).pixels)
        assert np.abs(cache.images[i] / 255.0 - expected).max() <= 0.5 / 255 + 1e-6
    meta = json.loads((cache.path / "meta.json").read_text())
    assert meta["n_ok"] == len(m) - 2 and meta["preprocessing"]["size"] == 32


def test_cache_is_reused_not_decoded_again(tmp_path, class_folders):
    m = from_folders(class_folders)
    pre = Preprocessing(size=24)
    first = build_cache(m, pre, tmp_path / "cache", workers=0, progress=False)
    marked = np.load(first.path / "images.npy", mmap_mode="r+")
    marked[0] = 7  # a value decoding would never give back for this image
    marked.flush()
    del marked
    again = build_cache(m, pre, tmp_path / "cache", workers=0, progress=False)
    assert again.path == first.path and (again.images[0] == 7).all()
    # normalisation does not change the cached pixels; size does
    assert cache_key(m, Preprocessing(size=24, mean=0.1, std=0.2)) == cache_key(m, pre)
    assert cache_key(m, Preprocessing(size=32)) != cache_key(m, pre)
    assert len(list((tmp_path / "cache").iterdir())) == 1  # no partial folders left


def test_parallel_build_equals_serial(tmp_path, class_folders):
    m = from_folders(class_folders)
    pre = Preprocessing(size=32, keep_aspect=False)
    serial = build_cache(m, pre, tmp_path / "a", workers=0, progress=False)
    parallel = build_cache(m, pre, tmp_path / "b", workers=2, chunk=3, progress=True)
    np.testing.assert_array_equal(np.asarray(serial.images), np.asarray(parallel.images))


def test_npz_cache_and_float16(tmp_path):
    src = need_data("organamnist", "organamnist_trainval.npz")
    with np.load(src) as z:
        np.savez(tmp_path / "o.npz", train_images=z["train_images"][:30], train_labels=z["train_labels"][:30],
                 val_images=z["val_images"][:10], val_labels=z["val_labels"][:10])
        first = z["train_images"][0]
    m = from_npz(tmp_path / "o.npz")
    pre = Preprocessing(size=28)
    cache = build_cache(m, pre, tmp_path / "c", dtype="float16", progress=False)
    assert cache.images.dtype == np.float16 and cache.ok.all()
    np.testing.assert_allclose(cache.images[0], first / 255.0, atol=1e-3)  # 28 px: no resize
    x, y = cache.arrays("val")
    assert x.shape == (10, 1, 28, 28) and x.dtype == np.float32 and y.shape == (10, 1)
    np.testing.assert_allclose(x[0, 0], (cache.images[30].astype(np.float32) - 0.5) / 0.25, atol=1e-6)
    from radroute.data.dataset import ManifestDataset

    direct = ManifestDataset(m, pre)
    np.testing.assert_allclose(direct[30][0].numpy(), x[0], atol=1e-3 / 0.25)
    assert direct[31][1].tolist() == y[1].tolist()


def test_cached_dataset_yields_the_contract(tmp_path, class_folders):
    torch = pytest.importorskip("torch")
    rows = ["path,label,plane"]
    for i, f in enumerate(sorted(class_folders.rglob("*.jpg"))):
        rows.append(f"{f},{f.parent.name},{'' if i % 4 == 0 else ('axial', 'coronal')[i % 2]}")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    m = from_csv(tmp_path / "m.csv")
    pre = Preprocessing(size=32)
    cache = build_cache(m, pre, tmp_path / "cache", workers=0, progress=False)
    calls = []

    def augment(x):
        calls.append(tuple(x.shape))
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0  # augmentation sees [0, 1]
        return x

    ds = cache.dataset(augment=augment)
    x, y = ds[1]
    assert x.shape == (1, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.shape == (2,) and calls == [(1, 32, 32)]
    assert ds[0][1][1].item() == -1  # missing plane label
    np.testing.assert_allclose(x.numpy(), pre.normalise(cache.images[1])[None], atol=1e-6)
    # the uncached dataset gives the same tensors up to the uint8 quantisation
    from radroute.data.dataset import ManifestDataset

    x2, y2 = ManifestDataset(m, pre)[1]
    assert torch.equal(y, y2) and (x - x2).abs().max() <= 0.5 / 255 / pre.std + 1e-5
    # pickling (DataLoader workers) does not copy the memmap
    ds.augment = None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone.cache._images is None and torch.equal(clone[1][0], ds[1][0])
    loader = torch.utils.data.DataLoader(cache.dataset(), batch_size=5)
    xb, yb = next(iter(loader))
    assert xb.shape == (5, 1, 32, 32) and yb.shape == (5, 2)


def test_dataset_split_and_bad_files_left_out(tmp_path, class_folders):
    shutil.copy(next(class_folders.rglob("*.jpg")), class_folders / "head" / "copy.jpg")
    (class_folders / "head" / "copy.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\0" * 10)
    from radroute.data.splits import assign_splits

    m = assign_splits(from_folders(class_folders), (0.5, 0.5, 0.0), seed=0)
    cache = build_cache(m, Preprocessing(size=16), tmp_path, workers=0, progress=False)
    train, val = cache.dataset("train"), cache.dataset("val")
    assert len(train) + len(val) == len(m) - 1
    assert set(train.indices).isdisjoint(val.indices)
    assert len(cache.errors) == 1 and cache.errors[0]["index"] not in set(train.indices) | set(val.indices)
