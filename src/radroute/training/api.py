"""From datasets to a saved :class:`~radroute.models.package.ModelPackage`.

:func:`fit_package` trains a network (``scratch``, ``finetune``, ``head``);
:func:`fit_features_package` fits a linear SVM / logistic regression on frozen features
(``features-svm``, ``features-logreg``). Both write the package (weights, architecture, class
names, preprocessing, data description, validation metrics, abstention thresholds) to
``out_dir`` on rank 0 and return it.
"""
from __future__ import annotations

import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from torch import nn
from torch.utils.data import Dataset

from radroute.errors import InvalidConfigError, ModelNotFoundError
from radroute.models import ModelPackage, canonical_name, create_model
from radroute.training.abstention import DEFAULT_TARGET
from radroute.training.linear_head import fit_linear_head, set_classifier
from radroute.training.package_metrics import AbstainTarget, validation_summary
from radroute.training.runtime import seed_everything
from radroute.training.trainer import TrainConfig, Trainer

FEATURE_MODES = {"features-svm": "svm", "features-logreg": "logreg"}
MODES = ("scratch", "finetune", "head", *FEATURE_MODES)


def _command_line() -> str:
    return " ".join(shlex.quote(a) for a in sys.argv)


def _preprocessing_dict(preprocessing: Any) -> dict[str, Any]:
    return preprocessing.to_dict() if hasattr(preprocessing, "to_dict") else dict(preprocessing)


def load_backbone(backbone: str | Path, num_classes: int, pretrained_path: str | Path | None = None,
                  ) -> tuple[nn.Module, str, dict[str, Any], dict[str, Any]]:
    """``(model, architecture, arch_kwargs, description)`` for a package path/bundled name or an
    architecture name with its pretrained weights (``pretrained_path`` or the local cache)."""
    try:
        pkg = ModelPackage.load(backbone)
    except ModelNotFoundError:
        pkg = None
    if pkg is not None:
        model = pkg.build()
        desc = {"package": str(pkg.path), "name": pkg.name, "version": pkg.version,
                "architecture": pkg.architecture, "tasks": pkg.tasks,
                "trained_on": pkg.training.get("data")}
        return model, pkg.architecture, dict(pkg.arch_kwargs), desc
    model = create_model(str(backbone), num_classes=num_classes, in_chans=1,
                         pretrained=pretrained_path is None, pretrained_path=pretrained_path)
    desc = {"architecture": model.architecture, "weights": str(pretrained_path) if pretrained_path
            else "timm/torchvision cache (ImageNet)"}
    return model, model.architecture, {}, desc


def _save(model: nn.Module, out_dir: Path, name: str | None, architecture: str,
          arch_kwargs: dict, tasks: dict, preprocessing: Any, training: dict, metrics: dict,
          thresholds: dict, is_main: bool, body_part_map: dict | None = None) -> ModelPackage:
    pkg = ModelPackage(name=name or out_dir.name, architecture=canonical_name(architecture),
                       tasks={t: list(c) for t, c in tasks.items()},
                       preprocessing=_preprocessing_dict(preprocessing), arch_kwargs=arch_kwargs,
                       in_chans=1, thresholds=thresholds, training=training, metrics=metrics,
                       body_part_map={t: dict(m) for t, m in (body_part_map or {}).items()})
    if is_main:
        pkg.save(out_dir, model.state_dict())
    return pkg


def fit_package(architecture: str, tasks: dict[str, Sequence[str]], train_ds: Dataset,
                val_ds: Dataset | None, preprocessing: Any, out_dir: str | Path,
                config: TrainConfig | None = None, *, name: str | None = None,
                arch_kwargs: dict[str, Any] | None = None, backbone: str | Path | None = None,
                pretrained_path: str | Path | None = None, sample_weights: Sequence[float] | None = None,
                data: dict[str, Any] | None = None, abstain_target: AbstainTarget = DEFAULT_TARGET,
                resume: bool = False, command: str | None = None, select_on_val: bool = True,
                body_part_map: dict[str, dict[str, str]] | None = None,
                training_info: dict[str, Any] | None = None) -> ModelPackage:
    """Train ``architecture`` (or ``backbone``: a package or pretrained model) and save the package.

    ``config.mode``: ``scratch`` (random init), ``finetune`` (all layers from the backbone /
    pretrained weights), ``head`` (only the classifier is trained). ``data`` describes the
    training data (sources, split, sizes) for the package. With ``select_on_val`` the weights
    of the best validation epoch are kept (and ``config.patience`` stops early); without, the
    last epoch's, and ``val_ds`` only gives the package's metrics and thresholds.
    ``training_info`` is stored in the package's ``training`` record (licence, source ...).
    """
    config = config or TrainConfig()
    seed_everything(config.seed)  # the initial weights too
    out_dir = Path(out_dir)
    tasks = {t: list(c) for t, c in tasks.items()}
    n_out = sum(len(c) for c in tasks.values())
    arch_kwargs = dict(arch_kwargs or {})
    backbone_desc = None
    if config.mode == "scratch":
        if backbone is not None or pretrained_path is not None:
            raise InvalidConfigError("mode 'scratch' trains from random weights: drop --backbone/--pretrained-path")
        model = create_model(architecture, num_classes=n_out, in_chans=1, **arch_kwargs)
    else:
        if backbone is None and pretrained_path is None:
            backbone = architecture  # its ImageNet weights from the local cache
        if backbone is not None:
            model, architecture, bk_kwargs, backbone_desc = load_backbone(backbone, n_out, pretrained_path)
            arch_kwargs = {**bk_kwargs, **arch_kwargs}
            if getattr(model.get_classifier(), "out_features", None) != n_out:
                model.reset_classifier(n_out)
        else:
            model = create_model(architecture, num_classes=n_out, in_chans=1,
                                 pretrained_path=pretrained_path, **arch_kwargs)
            backbone_desc = {"architecture": architecture, "weights": str(pretrained_path)}
    trainer = Trainer(model, tasks, train_ds, val_ds if select_on_val else None, config, out_dir=out_dir,
                      sample_weights=sample_weights,
                      log_extra={"architecture": architecture, "command": command or _command_line()})
    result = trainer.fit(resume=resume)
    metrics, thresholds = {}, {}
    if val_ds is not None and len(val_ds):
        logits, y = trainer.predict(val_ds)
        metrics, thresholds = validation_summary(logits, y, tasks, abstain_target)
    training = {
        "command": command or _command_line(), "mode": config.mode, "backbone": backbone_desc, "data": data,
        "n_train": len(train_ds), "n_val": len(val_ds) if val_ds is not None else 0,
        "config": asdict(config), "world_size": trainer.dist.world_size, "device": str(trainer.device),
        "precision": str(trainer.amp_dtype or "fp32"), "best_epoch": result.best_epoch,
        "epochs_run": len(result.history), "stop_reason": result.stop_reason,
        "train_seconds": round(result.train_seconds, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(training_info or {}),
    }
    return _save(trainer.model, out_dir, name, architecture, arch_kwargs, tasks, preprocessing,
                 training, metrics, thresholds, trainer.dist.is_main, body_part_map)


def fit_features_package(backbone: str | Path, tasks: dict[str, Sequence[str]], train_ds: Dataset,
                         val_ds: Dataset | None, preprocessing: Any, out_dir: str | Path,
                         mode: str = "features-svm", config: TrainConfig | None = None, *,
                         name: str | None = None, pretrained_path: str | Path | None = None,
                         C: float = 1.0, data: dict[str, Any] | None = None,
                         abstain_target: AbstainTarget = DEFAULT_TARGET, command: str | None = None,
                         body_part_map: dict[str, dict[str, str]] | None = None,
                         training_info: dict[str, Any] | None = None) -> ModelPackage:
    """Frozen penultimate features of ``backbone`` + a linear SVM / logistic regression.

    ``backbone``: a model package (e.g. trained on MedPix, used on OrganAMNIST) or an
    architecture name whose pretrained weights are available locally. The train dataset should
    be unaugmented. The fitted linear model becomes the package's last layer.
    """
    if mode not in FEATURE_MODES:
        raise InvalidConfigError(f"features mode must be one of {tuple(FEATURE_MODES)}, got {mode!r}")
    config = config or TrainConfig(epochs=1)
    out_dir = Path(out_dir)
    tasks = {t: list(c) for t, c in tasks.items()}
    sizes = [len(c) for c in tasks.values()]
    model, architecture, arch_kwargs, backbone_desc = load_backbone(backbone, sum(sizes), pretrained_path)
    trainer = Trainer(model, tasks, train_ds, val_ds, config)
    t0 = time.perf_counter()
    fx, fy = trainer.predict(train_ds, features=True)
    vx = vy = None
    if val_ds is not None and len(val_ds):
        vx, vy = trainer.predict(val_ds, features=True)
    W, b, info = fit_linear_head(fx, fy, sizes, FEATURE_MODES[mode], vx, vy, C=C, seed=config.seed)
    set_classifier(trainer.model, W, b)
    metrics, thresholds = {}, {}
    if vx is not None:
        metrics, thresholds = validation_summary(vx @ W.T + b, vy, tasks, abstain_target)
    training = {
        "command": command or _command_line(), "mode": mode, "backbone": backbone_desc, "data": data,
        "n_train": len(train_ds), "n_val": len(val_ds) if val_ds is not None else 0,
        "linear_head": info, "feature_dim": int(fx.shape[1]), "config": asdict(config),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **(training_info or {}),
    }
    return _save(trainer.model, out_dir, name, architecture, arch_kwargs, tasks, preprocessing,
                 training, metrics, thresholds, trainer.dist.is_main, body_part_map)
