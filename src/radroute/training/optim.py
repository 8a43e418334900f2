"""Optimiser + learning-rate schedule presets of the published systems.

* ``adam`` (Pham et al.): Adam, lr 1e-4, cosine annealing with warm restarts (SGDR) down to
  lr/100, updated every iteration; equal cycles (one for runs under 6 epochs, two under 15, else
  three), so a run ends at the bottom of a cycle.
* ``sgd`` (Rajkomar et al.): SGD with Nesterov momentum 0.9, lr 0.01, weight decay 5e-4; step
  decay: the learning rate is divided by 10 every ``max(1, epochs // 3)`` epochs.

The schedule is a function of training progress in (fractional) epochs. With a time budget the
trainer passes ``max(epochs done, epochs * time used / budget)``, so the schedule completes
when the budget ends even if fewer epochs fit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import torch

from radroute.errors import InvalidConfigError

OPTIMIZERS = ("adam", "sgd")
DEFAULT_LR = {"adam": 1e-4, "sgd": 1e-2}
DEFAULT_WEIGHT_DECAY = {"adam": 0.0, "sgd": 5e-4}


@dataclass
class Schedule:
    """An optimiser plus its learning-rate rule; call :meth:`step` after every optimiser step."""

    name: str
    optimizer: torch.optim.Optimizer
    base_lr: float
    epochs: int
    steps_per_epoch: int
    step_count: int = 0
    progress: float = 0.0  # in epochs

    def lr_at(self, epoch: float) -> float:
        """The learning rate after ``epoch`` (fractional) epochs of training."""
        epoch = min(max(epoch, 0.0), self.epochs - 1e-9)
        if self.name == "adam":
            cycles = 1 if self.epochs < 6 else 2 if self.epochs < 15 else 3
            period = self.epochs / cycles
            t = (epoch % period) / period
            low = self.base_lr * 0.01
            return low + (self.base_lr - low) * 0.5 * (1 + math.cos(math.pi * t))
        return self.base_lr * 0.1 ** math.floor(epoch / max(1, self.epochs // 3))

    def step(self, progress: float | None = None) -> None:
        """Advance one iteration; ``progress`` (epochs) overrides the step count's."""
        self.step_count += 1
        self.progress = max(self.step_count / self.steps_per_epoch, progress or 0.0)
        lr = self.lr_at(self.progress)
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(), "step_count": self.step_count,
                "progress": self.progress}

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        self.step_count, self.progress = int(state["step_count"]), float(state["progress"])


def make_schedule(name: str, params: Iterable[torch.nn.Parameter], epochs: int, steps_per_epoch: int,
                  lr: float | None = None, weight_decay: float | None = None) -> Schedule:
    """The optimiser/schedule preset ``name`` (``adam`` or ``sgd``) for a run of ``epochs``."""
    if name not in OPTIMIZERS:
        raise InvalidConfigError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    lr = DEFAULT_LR[name] if lr is None else lr
    wd = DEFAULT_WEIGHT_DECAY[name] if weight_decay is None else weight_decay
    params = [p for p in params if p.requires_grad]
    if name == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(params, lr=lr, weight_decay=wd)
    else:
        opt = torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd)
    return Schedule(name, opt, lr, max(1, epochs), max(1, steps_per_epoch))
