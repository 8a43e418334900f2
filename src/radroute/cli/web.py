"""``radroute web``: the status and review page beside the router."""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import typer

from radroute.cli._common import fail
from radroute.errors import RadrouteError


def web(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="router.toml (with a [web] section)"),
    host: Optional[str] = typer.Option(None, help="address to listen on [default: [web] host, 127.0.0.1]"),
    port: Optional[int] = typer.Option(None, min=0, max=65535, help="port [default: [web] port, 8080]"),
    log_file: Optional[Path] = typer.Option(None, help="write JSON logs here (default stderr)"),
    hash_password: bool = typer.Option(False, "--hash-password", help="print a password_hash for "
                                       "[[web.users]] (the password from stdin or a prompt) and exit"),
) -> None:
    """Serve the router's status page, review queue and REST API (needs radroute[web]).

    Reads the router's journal and spool; settled reviews are written through the journal, so
    the router may run at the same time. Refuses to start without [web] token or [[web.users]].
    """
    if hash_password:
        from radroute.web.auth import hash_password as make_hash

        password = (typer.prompt("password", hide_input=True, confirmation_prompt=True)
                    if sys.stdin.isatty() else sys.stdin.readline().rstrip("\r\n"))
        if not password:
            raise fail("empty password")
        typer.echo(make_hash(password))
        return
    if config is None:
        raise fail("give --config router.toml")
    from radroute.routing.config import load_config
    from radroute.routing.logs import setup_logging
    from radroute.web import missing_extra

    try:
        cfg = load_config(config)
        if cfg.web is None:
            from radroute.errors import InvalidConfigError

            raise InvalidConfigError('no [web] section: the web page needs [web] token = "..." '
                                     "or [[web.users]] entries (name, password_hash)", cfg.source_path)
    except RadrouteError as exc:
        raise fail(str(exc))
    missing = missing_extra()
    if missing:
        raise fail(f"the web page needs {', '.join(missing)}: pip install 'radroute[web]'")
    setup_logging(str(log_file) if log_file else None, logging.INFO, cfg.patient_hash_salt)
    from radroute.web.server import run

    try:
        run(cfg, host, port)
    except RadrouteError as exc:
        raise fail(str(exc))
