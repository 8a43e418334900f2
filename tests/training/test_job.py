"""radroute.training.run(TrainJob) end to end: a tiny network, a few steps, an in-memory manifest."""
from __future__ import annotations

import json
import os

import pytest
import torch
import torch.multiprocessing as mp

from radroute.errors import InvalidConfigError
from radroute.models import ModelPackage
from radroute.training import TrainJob, run
from tests.helpers import free_port

TINY = {"widths": [8, 8, 8, 8, 8], "fc_dim": 16, "pool_size": 2, "drop_rate": 0.0}


class CountingJitter(torch.nn.Module):
    """An extra transform that records how often it is applied."""

    calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        CountingJitter.calls += 1
        return (x * 0.95).clamp(0, 1)


def tiny_job(organ_small, tmp_path, **fields) -> TrainJob:
    return TrainJob(**{"data": organ_small.manifest, "out": tmp_path / "pkg", "arch": "roth2015",
                       "arch_kwargs": TINY, "size": 28, "epochs": 1, "batch_size": 32, "lr": 2e-3,
                       "precision": "fp32", "progress": False, "cache_dir": tmp_path / "cache",
                       "max_train_samples": 96, "cache_workers": 0, **fields})


def test_run_trains_a_package_with_bundled_model_options(organ_small, tmp_path):
    CountingJitter.calls = 0
    job = tiny_job(organ_small, tmp_path, epochs=2, augment="roth2015", extra_augment=CountingJitter(),
                   balance="label", select_on_val=False, abstain_target={"label": 0.5},
                   body_part_map={"label": {"liver": "abdomen"}}, training={"licence": "CC BY 4.0"},
                   command="tests: tiny job", name="tiny-organ")
    pkg = run(job)
    loaded = ModelPackage.load(tmp_path / "pkg")
    assert loaded.version == pkg.version and loaded.name == "tiny-organ"
    assert loaded.architecture == "roth2015" and loaded.arch_kwargs == TINY
    assert loaded.body_part_map == {"label": {"liver": "abdomen"}}
    t = loaded.training
    assert t["licence"] == "CC BY 4.0" and t["command"] == "tests: tiny job"
    assert t["n_train"] == 96 and t["n_val"] == 200 and t["epochs_run"] == 2
    assert t["data"]["balance"] == "label" and t["data"]["augment"] == "roth2015"
    assert t["data"]["max_train_samples"] == 96 and t["data"]["unreadable"] == 0
    assert CountingJitter.calls == 2 * 96  # every training image of both epochs, after the preset
    # select_on_val=False: the validation set is not seen during training, the last epoch is kept
    log = [json.loads(line) for line in (tmp_path / "pkg" / "train_log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log] == ["start", "epoch", "epoch", "end"]
    assert "val_acc" not in log[1] and log[-1]["best_epoch"] == 1
    abst = loaded.metrics["label"]["abstention"]
    assert abst["target"] == 0.5 and abst["n"] == 200 and loaded.thresholds["label"] == abst["threshold"]
    assert (tmp_path / "pkg" / "splits.csv").is_file()

    feat = run(tiny_job(organ_small, tmp_path, out=tmp_path / "feat", mode="features-logreg",
                        backbone=str(tmp_path / "pkg"), body_part_map={"label": {"heart": "chest"}}))
    assert feat.architecture == "roth2015" and feat.training["mode"] == "features-logreg"
    assert ModelPackage.load(tmp_path / "feat").body_part_map == {"label": {"heart": "chest"}}


def test_bad_jobs_raise_typed_errors(organ_small, tmp_path):
    with pytest.raises(InvalidConfigError, match="magic"):
        tiny_job(organ_small, tmp_path, mode="magic")
    with pytest.raises(InvalidConfigError, match="--backbone"):
        tiny_job(organ_small, tmp_path, mode="features-svm")
    with pytest.raises(InvalidConfigError, match="no readable samples in split 'test'"):
        run(tiny_job(organ_small, tmp_path, train_split="test"))
    with pytest.raises(InvalidConfigError, match="cannot balance task 'view'"):
        run(tiny_job(organ_small, tmp_path, balance="view"))


def _ddp_worker(rank: int, port: int, job: TrainJob) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    pkg = run(job)
    torch.save({"thresholds": pkg.thresholds, "metrics": pkg.metrics, "world": pkg.training["world_size"]},
               job.out.parent / f"rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_run_under_ddp_shares_splits_and_cache(organ_small, tmp_path):
    """Two gloo processes: rank 0 writes the split file and the cache, rank 1 reads them."""
    job = tiny_job(organ_small, tmp_path, device="cpu", max_train_samples=64)
    mp.spawn(_ddp_worker, args=(free_port(), job), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2))
    assert r0["world"] == r1["world"] == 2
    assert r0["thresholds"] == r1["thresholds"] and r0["metrics"]["label"]["n"] == 200
    assert ModelPackage.load(tmp_path / "pkg").training["world_size"] == 2
    assert len(list((tmp_path / "cache").iterdir())) == 1  # one cache, built once
