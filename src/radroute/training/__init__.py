"""Training: ``radroute train`` fits a model and writes a :class:`~radroute.models.ModelPackage`.

* :func:`run` / :class:`TrainJob` - the whole run, from a labelled dataset to a saved package
  (what ``radroute train`` and ``scripts/train_bundled.py`` call);
* :class:`Trainer` / :class:`TrainConfig` - the loop (presets, early stopping, checkpoints,
  resume, DDP, JSONL log, progress bar);
* :func:`fit_package` - scratch / finetune / head training to a package;
* :func:`fit_features_package` - frozen features + linear SVM / logistic regression;
* :func:`abstention_threshold` - per-task abstention threshold calibrated on validation.
"""
from radroute.training.api import MODES, fit_features_package, fit_package, load_backbone
from radroute.training.abstention import abstention_threshold
from radroute.training.job import TrainJob, run
from radroute.training.linear_head import fit_linear_head, set_classifier
from radroute.training.loss import multitask_loss
from radroute.training.optim import make_schedule
from radroute.training.runtime import cpu_has_fast_bf16, resolve_precision
from radroute.training.trainer import TrainConfig, Trainer, TrainResult

__all__ = [
    "MODES", "TrainConfig", "TrainJob", "TrainResult", "Trainer", "abstention_threshold",
    "cpu_has_fast_bf16", "fit_features_package", "fit_linear_head", "fit_package", "load_backbone",
    "make_schedule", "multitask_loss", "resolve_precision", "run", "set_classifier",
]
