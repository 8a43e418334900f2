"""Serve the web application with uvicorn."""
from __future__ import annotations

import ipaddress
import logging

from radroute.routing.config import RouterConfig
from radroute.routing.logs import log_event


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def run(cfg: RouterConfig, host: str | None = None, port: int | None = None) -> None:
    """Serve ``cfg``'s web page until SIGINT/SIGTERM (``host``/``port`` default to ``[web]``'s)."""
    import uvicorn

    from radroute.web.app import create_app

    host = host or cfg.web.host
    port = cfg.web.port if port is None else port
    app = create_app(cfg)
    if not is_loopback(host):
        log_event("web_not_loopback", level=logging.WARNING, host=host,
                  advice="credentials travel in clear over HTTP: put a TLS reverse proxy in front")
    log_event("web_started", host=host, port=port, spool=str(cfg.spool), review_queue=cfg.review_queue)
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False, proxy_headers=False)


__all__ = ["is_loopback", "run"]
