"""Loss, schedules, abstention thresholds, precision choice, sampler."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from radroute.errors import InvalidConfigError
from radroute.training import abstention_threshold, make_schedule, multitask_loss, resolve_precision
from radroute.training.runtime import cpu_has_fast_bf16
from radroute.training.sampler import EpochSampler


def test_multitask_loss_sums_tasks_and_ignores_missing():
    torch.manual_seed(0)
    logits = torch.randn(5, 3 + 2)
    y = torch.tensor([[0, 1], [2, -1], [1, 0], [-1, -1], [0, 1]])
    expected = (F.cross_entropy(logits[[0, 1, 2, 4], :3], y[[0, 1, 2, 4], 0])
                + F.cross_entropy(logits[[0, 2, 4], 3:], y[[0, 2, 4], 1]))
    torch.testing.assert_close(multitask_loss(logits, y, [3, 2]), expected)
    # a task with no label in the batch adds nothing (not NaN)
    only_first = torch.tensor([[0, -1], [2, -1]])
    torch.testing.assert_close(multitask_loss(logits[:2], only_first, [3, 2]),
                               F.cross_entropy(logits[:2, :3], only_first[:, 0]))


def test_adam_preset_is_cosine_with_warm_restarts():
    p = torch.nn.Parameter(torch.zeros(1))
    s = make_schedule("adam", [p], epochs=10, steps_per_epoch=4)
    assert isinstance(s.optimizer, torch.optim.Adam) and s.lr == pytest.approx(1e-4)
    lrs = []
    for _ in range(40):
        s.step()
        lrs.append(s.lr)
    # two cycles of 5 epochs: decreasing, a restart to the top, decreasing again to lr/100
    assert all(a > b for a, b in zip(lrs[:18], lrs[1:19]))  # lrs[i]: after i + 1 steps of 4/epoch
    assert lrs[19] > lrs[18] and lrs[19] == pytest.approx(1e-4)  # epoch 5: restart
    assert all(a > b for a, b in zip(lrs[19:39], lrs[20:40]))
    assert s.lr_at(10 - 1e-6) == pytest.approx(1e-6, rel=1e-3)


def test_sgd_preset_is_nesterov_with_step_decay():
    p = torch.nn.Parameter(torch.zeros(1))
    s = make_schedule("sgd", [p], epochs=9, steps_per_epoch=2)
    g = s.optimizer.param_groups[0]
    assert g["nesterov"] and g["momentum"] == 0.9 and g["weight_decay"] == 5e-4
    assert [s.lr_at(e) for e in (0, 2.9, 3, 6.5)] == pytest.approx([1e-2, 1e-2, 1e-3, 1e-4])
    with pytest.raises(InvalidConfigError):
        make_schedule("rmsprop", [p], 1, 1)


def test_time_progress_completes_the_schedule_early():
    p = torch.nn.Parameter(torch.zeros(1))
    s = make_schedule("adam", [p], epochs=4, steps_per_epoch=100)
    s.step(progress=4.0)  # the time budget is used up after one step
    assert s.lr == pytest.approx(1e-6, rel=1e-3)


def test_abstention_threshold():
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.45, 0.55], [0.6, 0.4]])
    y = np.array([0, 0, 1, 0, 0])  # the 0.55 one is wrong
    out = abstention_threshold(probs, y, target=0.99)
    assert out["threshold"] == pytest.approx(0.6)  # accepts 0.9, 0.8, 0.7, 0.6: all correct
    assert out["coverage"] == pytest.approx(0.8) and out["accuracy_accepted"] == 1.0
    assert abstention_threshold(probs, y, target=0.8)["threshold"] == 0.0  # 4/5 already meets 0.8
    assert abstention_threshold(probs[:1], np.array([1]))["threshold"] == 1.0  # nothing is reliable


def test_precision_choice():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    assert resolve_precision("bf16", cpu) == torch.bfloat16
    flags = open("/proc/cpuinfo").read()
    fast = "amx_bf16" in flags or "avx512_bf16" in flags
    assert cpu_has_fast_bf16() == fast
    assert resolve_precision("auto", cpu) == (torch.bfloat16 if fast else None)
    with pytest.raises(InvalidConfigError):
        resolve_precision("fp16", cpu)


def test_epoch_sampler_shards_and_balances():
    a = list(EpochSampler(11, seed=1, rank=0, world_size=2))
    b = list(EpochSampler(11, seed=1, rank=1, world_size=2))
    assert len(a) == len(b) == 6 and set(a) | set(b) == set(range(11))
    s = EpochSampler(10, seed=1)
    first = list(s)
    s.set_epoch(1)
    assert sorted(first) == list(range(10)) and list(s) != first
    weights = np.where(np.arange(1000) < 100, 9.0, 1.0)  # 100 rare samples weighted 9x: half the draws
    drawn = np.array(list(EpochSampler(1000, weights=weights)))
    assert math.isclose((drawn < 100).mean(), 0.5, abs_tol=0.06)
