"""One epoch-seeded sampler for shuffled, class-balanced and distributed training."""
from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """Shuffles (or draws with ``weights``, with replacement) from a generator seeded by
    ``seed + epoch``, then keeps this rank's share when ``world_size > 1``.

    Seeding by epoch makes a resumed run draw the same batches as an uninterrupted one. Every
    rank yields the same number of indices (DDP needs equal step counts).
    """

    def __init__(self, n: int, seed: int = 0, weights: Sequence[float] | None = None,
                 rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
        if self.weights is not None and len(self.weights) != n:
            raise ValueError(f"{len(self.weights)} sample weights for {n} samples")
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.world_size)

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g)
        else:
            order = torch.randperm(self.n, generator=g)
        total = len(self) * self.world_size
        if total > self.n:  # pad by repeating the start so every rank gets len(self)
            order = torch.cat([order, order[: total - self.n]])
        return iter(order[self.rank::self.world_size].tolist())
