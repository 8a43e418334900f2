"""Evaluation: metrics with confidence intervals, reports with figures, robustness tests.

See docs/evaluation.md. The main entry points:

* :func:`evaluate_predictions` (labels + probabilities -> JSON-serialisable metrics dict);
* :func:`write_report` (metrics.json + report.md + PNG figures);
* :func:`run_robustness` (label changes under text, rotation, occlusion, cropping).
"""
from radroute.evaluation.metrics import clopper_pearson, evaluate_predictions, youden_cutoff
from radroute.evaluation.calibration import expected_calibration_error
from radroute.evaluation.report import TaskPredictions, write_report
from radroute.evaluation.robustness import default_perturbations, run_robustness

__all__ = [
    "TaskPredictions",
    "clopper_pearson",
    "default_perturbations",
    "evaluate_predictions",
    "expected_calibration_error",
    "run_robustness",
    "write_report",
    "youden_cutoff",
]
