"""Parallel decoding: order, errors, reading with the chosen model's plan."""
from __future__ import annotations

import os

import pytest

from radroute.inference import pipeline
from radroute.inference.pipeline import decode_paths
from radroute.inference.policy import ModelPolicy

PLAN = {"m": {"size": 32, "keep_aspect": True, "window": "auto", "mean": 0.5, "std": 0.25}}


def test_order_kept_with_workers_and_bounded_prefetch(dicom_zoo, tmp_path):
    sources = [dicom_zoo / "files/pydicom/MR_small.dcm", dicom_zoo / "files/pydicom/CT_small.dcm"]
    links = []
    for i in range(40):
        link = tmp_path / f"{i:03d}.dcm"
        os.symlink(sources[i % 2], link)
        links.append(link)
    links.insert(7, tmp_path / "missing.dcm")
    out = list(decode_paths(links, PLAN, workers=2, chunk=3, prefetch=2))
    assert [d.path for d in out] == [str(p) for p in links]
    assert out[7].error["type"] == "not_found" and out[7].images == []
    assert all(d.error is None and d.images[0].arrays["m"].shape == (1, 32, 32) for i, d in enumerate(out) if i != 7)
    assert out[0].images[0].sop_instance_uid != out[1].images[0].sop_instance_uid


def test_choosing_reads_with_the_chosen_models_plan(dicom_zoo):
    plans = {"chest-view": {"size": 48, "window": "auto"}, "ct-mr-region": {"size": 32, "window": "soft_tissue"}}
    cr, ct, us = decode_paths([dicom_zoo / "files/fo-dicom/CR-MONO1-10-chest.dcm",
                               dicom_zoo / "files/wg04/CT1_UNC.dcm",
                               dicom_zoo / "files/wg04/US1_UNC.dcm"], plans, choose=ModelPolicy())
    assert cr.model == "chest-view" and cr.images[0].arrays["chest-view"].shape == (1, 48, 48)
    assert ct.model == "ct-mr-region" and ct.images[0].arrays["ct-mr-region"].shape == (1, 32, 32)
    assert us.model is None and us.error["type"] == "wrong_modality"


def _crash_on_marked(path, plans, choose, frames, _real=pipeline.decode_path):
    if path.endswith("crash.dcm"):
        os._exit(3)  # what a native decoder's segfault looks like to the pool
    return _real(path, plans, choose, frames)


def test_a_crashing_decoder_costs_one_input_not_the_run(dicom_zoo, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "decode_path", _crash_on_marked)  # forked workers inherit it
    good = dicom_zoo / "files/pydicom/MR_small.dcm"
    paths = [good] * 5 + [tmp_path / "crash.dcm"] + [good] * 10
    out = list(decode_paths(paths, PLAN, workers=2, chunk=2, prefetch=2))
    assert [d.path for d in out] == [str(p) for p in paths]
    assert out[5].error["type"] == "corrupt_pixel_data"
    assert all(d.error is None for i, d in enumerate(out) if i != 5)
