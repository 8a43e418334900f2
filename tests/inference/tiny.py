"""A tiny randomly initialised model package for inference tests (no training, no network)."""
from __future__ import annotations

from pathlib import Path

import torch

from radroute.models import ModelPackage, create_model

TASKS = {"modality": ["CT", "MR"], "region": ["head", "thorax", "abdomen"]}
ARCH_KWARGS = {"widths": [4, 8, 8, 8, 8], "fc_dim": 16, "pool_size": 2}


def make_tiny_package(directory: Path, size: int = 32, seed: int = 0, **overrides) -> ModelPackage:
    """Save and return a two-task ``roth2015`` package of a few thousand random weights."""
    torch.manual_seed(seed)
    tasks = overrides.pop("tasks", TASKS)
    model = create_model("roth2015", num_classes=sum(len(c) for c in tasks.values()),
                         in_chans=1, **ARCH_KWARGS)
    fields = dict(
        name="tiny", architecture="roth2015", tasks=tasks, arch_kwargs=ARCH_KWARGS,
        preprocessing={"size": size, "keep_aspect": True, "window": "soft_tissue",
                       "mean": 0.5, "std": 0.25},
        thresholds={task: 0.0 for task in tasks},
        body_part_map={"region": {"head": "head", "thorax": "chest", "abdomen": "abdomen"}})
    package = ModelPackage(**{**fields, **overrides})
    package.save(directory, model.state_dict())
    return package
