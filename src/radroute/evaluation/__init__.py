"""Evaluation: metrics with confidence intervals, reports with figures, robustness tests.

See docs/evaluation.md. The main entry points:

* :func:`run` (:class:`EvalJob`) and :func:`evaluate_robustness` (:class:`RobustnessJob`): a model
  package on labelled data -> report / robustness files (``radroute evaluate`` / ``robustness``);
* :func:`load_labelled` (a dataset's split, read as ``radroute train`` reads it);
* :func:`evaluate_predictions` (labels + probabilities -> JSON-serialisable metrics dict);
* :func:`write_report` (metrics.json + report.md + PNG figures);
* :func:`run_robustness` (label changes under text, rotation, occlusion, cropping).
"""
from radroute.evaluation.metrics import clopper_pearson, evaluate_predictions, youden_cutoff
from radroute.evaluation.calibration import expected_calibration_error
from radroute.evaluation.job import EvalJob, RobustnessJob, evaluate_robustness, run
from radroute.evaluation.labelled import load_labelled
from radroute.evaluation.report import TaskPredictions, write_report
from radroute.evaluation.robustness import default_perturbations, run_robustness

__all__ = [
    "EvalJob",
    "RobustnessJob",
    "TaskPredictions",
    "clopper_pearson",
    "default_perturbations",
    "evaluate_predictions",
    "evaluate_robustness",
    "expected_calibration_error",
    "load_labelled",
    "run",
    "run_robustness",
    "write_report",
    "youden_cutoff",
]
