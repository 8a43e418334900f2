"""Per-series decisions: gather a series' instances until it has been quiet, then decide once.

Instances are grouped by SeriesInstanceUID; once no instance of a series has arrived for
``quiet_seconds`` the group is released and the whole series gets one decision (from an
aggregate of up to ``max_classified`` evenly spaced instances' predictions), so a series is
never split across destinations. Late instances of an already decided series get the same
decision (remembered for the most recent ``remember`` series).
"""
from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from radroute.routing.decide import sample_evenly, series_key


@dataclass
class Pending:
    """An instance waiting for its decision."""

    id: int
    sop_instance_uid: str
    series_instance_uid: str | None
    spool_path: str
    tags: dict
    received: float = field(default_factory=time.monotonic)


@dataclass
class SeriesGroup:
    key: str
    instances: list[Pending] = field(default_factory=list)
    last_seen: float = field(default_factory=time.monotonic)


class SeriesCollector:
    def __init__(self, quiet_seconds: float, max_classified: int = 16, remember: int = 10000):
        self.quiet = quiet_seconds
        self.max_classified = max_classified
        self.groups: dict[str, SeriesGroup] = {}
        self.decided: OrderedDict[str, Any] = OrderedDict()
        self.remember = remember

    def add(self, inst: Pending) -> None:
        key = series_key(inst.sop_instance_uid, inst.series_instance_uid)
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = SeriesGroup(key)
        group.instances.append(inst)
        group.last_seen = time.monotonic()

    def quiet_groups(self, now: float | None = None, force: bool = False) -> list[SeriesGroup]:
        """Remove and return the groups that have been quiet long enough (all with ``force``)."""
        now = time.monotonic() if now is None else now
        ready = [g for g in self.groups.values() if force or now - g.last_seen >= self.quiet]
        for g in ready:
            del self.groups[g.key]
        return ready

    def sample(self, group: SeriesGroup) -> list[Pending]:
        """Up to ``max_classified`` instances spread evenly over the series (by InstanceNumber)."""
        return sample_evenly(group.instances, self.max_classified, lambda p: p.tags)

    def remember_decision(self, key: str, decision: Any, prediction: dict | None) -> None:
        self.decided[key] = (decision, prediction)
        self.decided.move_to_end(key)
        while len(self.decided) > self.remember:
            self.decided.popitem(last=False)

    def known_decision(self, key: str):
        return self.decided.get(key)
