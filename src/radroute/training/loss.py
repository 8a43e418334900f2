"""The multi-task loss: one cross-entropy per task over its slice of the concatenated logits."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

IGNORE = -1


def task_slices(task_sizes: Sequence[int]) -> list[slice]:
    out, start = [], 0
    for n in task_sizes:
        out.append(slice(start, start + n))
        start += n
    return out


def multitask_loss(logits: torch.Tensor, y: torch.Tensor, task_sizes: Sequence[int],
                   label_smoothing: float = 0.0) -> torch.Tensor:
    """Sum over tasks of the mean cross-entropy of the labelled samples (``y == -1`` ignored).

    A task with no labelled sample in the batch adds 0 (not NaN).
    """
    y = y.view(len(y), -1)
    total = logits.new_zeros((), dtype=torch.float32)
    for t, sl in enumerate(task_slices(task_sizes)):
        target = y[:, t]
        if (target != IGNORE).any():
            total = total + F.cross_entropy(logits[:, sl].float(), target, ignore_index=IGNORE,
                                            label_smoothing=label_smoothing)
    return total


def correct_counts(logits: torch.Tensor, y: torch.Tensor, task_sizes: Sequence[int]) -> tuple[int, int]:
    """(correct, labelled) summed over tasks: the running accuracy shown while training."""
    y = y.view(len(y), -1)
    correct = labelled = 0
    for t, sl in enumerate(task_slices(task_sizes)):
        mask = y[:, t] != IGNORE
        correct += int((logits[mask, sl].argmax(1) == y[mask, t]).sum())
        labelled += int(mask.sum())
    return correct, labelled
