"""The router's decision steps, pure: the service and ``route --dry-run`` both call these.

One instance (or one series, by its first instance's tags):

1. :func:`first_decision` on the tags alone: a :class:`~radroute.routing.rules.Decision`, or
   "classify first" when a rule (or a destination's tag correction / path template) needs the
   model;
2. series mode: :func:`series_key` groups the instances and :func:`sample_evenly` picks the ones
   to classify; their records become one with ``Prediction.aggregate``;
3. :func:`final_decision` with the prediction;
4. :func:`targets`: where each destination would put it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from radroute.inference.record import Prediction
from radroute.routing.config import RouterConfig
from radroute.routing.destinations import describe_target
from radroute.routing.rules import NEEDS_PREDICTION, Decision, decide

T = TypeVar("T")


def destination_wants_prediction(cfg: RouterConfig, name: str) -> bool:
    """Whether delivering to ``name`` uses the prediction (corrected tags, a ``{label_*}`` path,
    results sent with the instance)."""
    dest = cfg.destinations[name]
    if dest.send_results is not None:
        return True
    if dest.correct_tags:
        return cfg.tag_correction is not None
    return dest.needs_prediction


def first_decision(cfg: RouterConfig, tags: dict[str, str], can_classify: bool = True
                   ) -> tuple[Decision | None, bool]:
    """``(decision, classify)`` from the tags alone.

    ``classify`` is true when the image must be classified first: a rule needs the model before
    any rule matched, the chosen destinations use the prediction, or every classified instance's
    results go to ``results_destination``. ``decision`` is the tags-only
    decision, or ``None`` when only a prediction can decide. With ``can_classify=False`` (no
    model) nothing asks for one.
    """
    d = decide(cfg, tags)
    if d is NEEDS_PREDICTION:
        return None, can_classify
    wants = can_classify and (cfg.results_destination is not None
                              or any(destination_wants_prediction(cfg, n) for n in d.destinations))
    return d, wants


def results_destinations(cfg: RouterConfig, decision: Decision, prediction: Prediction | None
                         ) -> tuple[str, ...]:
    """Where the results of a classified instance (or series) go as a DICOM SR: the
    ``results_destination`` and the decision's destinations with ``send_results = "sr"``."""
    if prediction is None or not prediction.ok:
        return ()
    names = [cfg.results_destination] if cfg.results_destination else []
    names += [n for n in decision.destinations if cfg.destinations[n].send_results == "sr"]
    return tuple(dict.fromkeys(names))


def final_decision(cfg: RouterConfig, tags: dict[str, str], prediction: Prediction | None) -> Decision:
    """The decision once the image is classified (``prediction`` ``None``: it could not be)."""
    return decide(cfg, tags, prediction, classified=True)  # type: ignore[return-value]


def series_key(sop_instance_uid: str, series_instance_uid: str | None) -> str:
    """The group an instance is decided with: its series, or itself when it names none."""
    return series_instance_uid or f"instance:{sop_instance_uid}"


def instance_number(tags: dict[str, str]) -> tuple[int, int]:
    """Sort key by InstanceNumber (instances without a usable one last)."""
    try:
        return (0, int(tags.get("InstanceNumber") or 0))
    except ValueError:
        return (1, 0)


def sample_evenly(items: Sequence[T], limit: int, tags: Callable[[T], dict[str, str]]) -> list[T]:
    """Up to ``limit`` items spread evenly over the series, in InstanceNumber order."""
    ordered = sorted(items, key=lambda item: instance_number(tags(item)))
    n = len(ordered)
    if n <= limit:
        return ordered
    step = n / limit
    return [ordered[int(i * step + step / 2)] for i in range(limit)]


def targets(cfg: RouterConfig, decision: Decision, tags: dict[str, str],
            prediction: Prediction | None) -> dict[str, str]:
    """Destination name -> where the instance goes: a folder path, ``dicom AE@host:port`` or
    ``stow URL``."""
    return {name: describe_target(cfg.destinations[name], tags, prediction, decision.rule)
            for name in decision.destinations}
