"""A tiny randomly initialised model package for inference tests (no training, no network)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
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


def make_constant_package(directory: Path, tasks: dict[str, list[str]], answers: dict[str, str],
                          size: int = 32, **overrides) -> ModelPackage:
    """A tiny package that gives every image the same answers (``{task: label}``) with
    probability ~0.9: its classifier weights are zero and its biases pick the labels."""
    package = make_tiny_package(directory, size=size, tasks=tasks, **overrides)
    weights = package.state_dict()
    weights["classifier.weight"].zero_()
    bias = weights["classifier.bias"].zero_()
    start = 0
    for task, classes in tasks.items():
        if task in answers:
            bias[start + classes.index(answers[task])] = float(np.log(9.0 * (len(classes) - 1)))
        start += len(classes)
    package.save(directory, weights)
    return package
