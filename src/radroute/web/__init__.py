"""The web page beside the router: its status, and the review queue that teaches the next model.

``radroute web --config router.toml`` serves, from the router's journal and spool:

* ``/`` the status (counts per state and destination, delivery rate, dead letters, errors, health);
* ``/review`` the queue of abstained instances and tag-vs-prediction disagreements, with
  thumbnails and buttons to settle each one;
* a REST API (``/api/...``, described by ``/openapi.json``) including ``/api/labels.csv``, the
  settled instances as a training manifest for ``radroute train``.

Needs the optional extra (``pip install 'radroute[web]'``: FastAPI, uvicorn, Jinja2) and
credentials in ``[web]``. :func:`radroute.web.app.create_app` builds the ASGI application,
:func:`radroute.web.server.run` serves it.
"""
from __future__ import annotations

import importlib.util

#: the modules the ``web`` extra installs
EXTRA_MODULES = ("fastapi", "uvicorn", "jinja2")


def missing_extra() -> list[str]:
    """The ``web`` extra's modules that are not installed."""
    return [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]


__all__ = ["EXTRA_MODULES", "missing_extra"]
