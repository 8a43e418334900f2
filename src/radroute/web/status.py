"""What the status page shows: the journal's counts plus delivery rates, dead letters and health."""
from __future__ import annotations

from radroute.routing.config import RouterConfig
from radroute.routing.journal import Journal

#: the delivery-rate window, minutes
RATE_MINUTES = 15
DELIVERY_STATES = ("queued", "sending", "uncertain", "sent", "dead")


def status_view(cfg: RouterConfig, journal: Journal, recent: int = 20) -> dict:
    """``radroute status --json`` plus, per destination, its kind, counts, health and deliveries
    per minute over the last :data:`RATE_MINUTES`; the latest dead letters; last activity."""
    st = journal.status(recent)
    rates = journal.delivery_rate(RATE_MINUTES)
    health = journal.destination_health()
    names = list(cfg.destinations) + sorted(set(st["deliveries"]) - set(cfg.destinations))
    destinations = []
    for name in names:
        counts = st["deliveries"].get(name, {})
        dcfg = cfg.destinations.get(name)
        destinations.append({
            "name": name, "type": dcfg.type if dcfg else None,
            "counts": {s: counts.get(s, 0) for s in DELIVERY_STATES},
            "health": health.get(name, {"up": True, "since": None, "message": None}),
            "per_minute": rates.get(name, [0] * RATE_MINUTES),
            "sent_recently": sum(rates.get(name, ())),
        })
    return {**st, "destinations": destinations, "dead_letters": journal.dead_letters(),
            "rate_minutes": RATE_MINUTES, "last_activity": journal.last_activity(),
            "review_destination": cfg.review_destination, "review_queue": cfg.review_queue}


__all__ = ["DELIVERY_STATES", "RATE_MINUTES", "status_view"]
