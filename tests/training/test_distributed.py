"""DDP with two gloo processes on the CPU (what torchrun does, via torch.multiprocessing)."""
from __future__ import annotations

import json
import os

import numpy as np
import torch
import torch.multiprocessing as mp

from radroute.models import create_model
from radroute.training import TrainConfig, Trainer
from tests.helpers import free_port

WORLD = 2


def _small_model():
    torch.manual_seed(0)
    return create_model("roth2015", num_classes=11, widths=(8, 16, 16, 16, 16), fc_dim=32)


def _config():
    return TrainConfig(epochs=2, batch_size=32, lr=1e-3, precision="fp32", progress=False,
                       patience=None, seed=3)


def _worker(rank: int, port: int, out_dir: str, train, val, tasks) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(WORLD),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    trainer = Trainer(_small_model(), tasks, train, val, _config(), out_dir=out_dir)
    shard = list(trainer.sampler)
    result = trainer.fit()
    torch.save({"state": trainer.model.state_dict(), "shard": shard, "best": result.best_score,
                "steps": [h["steps"] for h in result.history]},
               os.path.join(out_dir, f"rank{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_ddp_two_gloo_processes(organ_small, tmp_path):
    mp.spawn(_worker, args=(free_port(), str(tmp_path), organ_small.train, organ_small.val,
                            organ_small.tasks), nprocs=WORLD, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD))
    # the ranks saw disjoint halves of the data and took the same number of steps
    assert len(r0["shard"]) == len(r1["shard"]) == 150
    assert set(r0["shard"]).isdisjoint(r1["shard"])
    assert r0["steps"] == r1["steps"] == [4, 4]
    # gradients were averaged: both ranks end with identical weights
    for key in r0["state"]:
        torch.testing.assert_close(r0["state"][key], r1["state"][key], rtol=0, atol=0)
    # only rank 0 logs; the gathered validation accuracy is that of the final weights on all 200
    log = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["event"] for r in log] == ["start", "epoch", "epoch", "end"] and log[0]["world_size"] == 2
    model = _small_model()
    model.load_state_dict(r0["state"])
    single = Trainer(model, organ_small.tasks, organ_small.train, organ_small.val, _config())
    assert single.validate()["val_acc"] == r0["best"] == r1["best"]
    assert np.isfinite(log[1]["train_loss"])
