"""``radroute serve``, ``radroute route`` and ``radroute status``: the imaging router's commands."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import typer

from radroute.errors import RadrouteError, error_dict


def _load_config(path: Path):
    from radroute.routing.config import load_config

    try:
        return load_config(path)
    except RadrouteError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


def _torch_threads(cfg) -> None:
    """The classifier's ``threads`` for a torch model: torch's thread count is the process's."""
    if cfg.needs_prediction and cfg.classifier.backend == "torch":
        import torch

        torch.set_num_threads(cfg.classifier.threads)


def serve(
    config: Path = typer.Option(..., "--config", "-c", help="router.toml"),
    log_file: Optional[Path] = typer.Option(None, help="write JSON logs here (default stderr)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log every delivery too"),
) -> None:
    """Run the router: receive (C-STORE SCP, watched folder), classify, route, deliver.

    Stops gracefully on SIGTERM/SIGINT; a restart resumes everything pending.
    """
    from radroute.routing.logs import setup_logging
    from radroute.routing.service import RouterService

    cfg = _load_config(config)
    setup_logging(str(log_file) if log_file else None, logging.DEBUG if verbose else logging.INFO,
                  cfg.patient_hash_salt)
    _torch_threads(cfg)
    try:
        RouterService(cfg).run_forever()
    except RadrouteError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


def route(
    paths: list[Path] = typer.Argument(..., help="DICOM files or folders"),
    config: Path = typer.Option(..., "--config", "-c", help="router.toml"),
    dry_run: bool = typer.Option(False, "--dry-run", help="only show each file's rule and destinations"),
    json_out: bool = typer.Option(False, "--json", help="one JSON record per file on stdout"),
    timeout: float = typer.Option(600.0, help="seconds to wait for deliveries (without --dry-run)"),
) -> None:
    """Route files on disk with the router's rules (``--dry-run``: show decisions, send nothing)."""
    from radroute.io import find_files
    from radroute.routing.dry_run import plan
    from radroute.routing.service import RouterService

    cfg = _load_config(config)
    files = list(find_files(paths))
    if dry_run:
        _torch_threads(cfg)
        try:
            rows = plan(cfg, files)
        except RadrouteError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        if json_out:
            for row in rows:
                typer.echo(json.dumps(row))
        else:
            _print_plan(rows)
        raise typer.Exit(1 if any(r["error"] for r in rows) else 0)

    from radroute.routing.logs import setup_logging

    setup_logging(None, logging.WARNING, cfg.patient_hash_salt)
    _torch_threads(cfg)
    service = RouterService(cfg, start_sources=False).start()
    errors = 0
    try:
        for f in files:
            try:
                service.ingest_file(f, "route")
            except RadrouteError as exc:
                errors += 1
                typer.echo(json.dumps({"path": str(f), "error": error_dict(exc)}), err=True)
        idle = service.wait_idle(timeout)
        status = service.journal.status()
    finally:
        service.stop()
    typer.echo(json.dumps({"files": len(files), "errors": errors, "complete": idle, **status}, indent=2))
    raise typer.Exit(0 if idle and not errors else 1)


def _print_plan(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table("file", "rule", "destinations", "prediction", "note")
    for r in rows:
        pred = ", ".join(f"{t}={p['label']} {p['score']:.2f}{' (abstained)' if p['abstained'] else ''}"
                         for t, p in (r["prediction"] or {}).items())
        note = r["error"]["type"] + ": " + r["error"]["message"] if r["error"] else (
            f"tags say {r['disagreement']['tag']}, image looks {r['disagreement']['predicted']}"
            if r["disagreement"] else "")
        dests = "\n".join(f"{n}: {t}" for n, t in (r["targets"] or {}).items())
        table.add_row(r["path"], r["rule"] or "-", dests or "-", pred or "-", note)
    Console().print(table)


def status(
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="router.toml"),
    spool: Optional[Path] = typer.Option(None, help="the spool folder (instead of --config)"),
    json_out: bool = typer.Option(False, "--json", help="print JSON"),
    recent: int = typer.Option(10, help="how many recent errors to list"),
) -> None:
    """Counts per state and destination, and recent errors, from the router's journal."""
    from radroute.routing.journal import Journal

    if (config is None) == (spool is None):
        typer.echo("error: give --config or --spool", err=True)
        raise typer.Exit(2)
    root = _load_config(config).spool if config else spool
    try:
        journal = Journal(root, readonly=True)
    except (FileNotFoundError, OSError):
        typer.echo(f"error: no router journal in {root}", err=True)
        raise typer.Exit(2)
    st = journal.status(recent)
    journal.close()
    if json_out:
        typer.echo(json.dumps(st, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print("instances: " + (", ".join(f"{k} {v}" for k, v in sorted(st["instances"].items()))
                                   or "none") + f"; tag disagreements {st['disagreements']}"
                  + (f"; review pending {st['review'].get('pending', 0)}, settled {st['review'].get('settled', 0)}"
                     if st.get("review") else ""))
    states = ["queued", "sending", "uncertain", "sent", "dead"]
    table = Table("destination", *states)
    for dest, counts in sorted(st["deliveries"].items()):
        table.add_row(dest, *(str(counts.get(s, 0)) for s in states))
    console.print(table)
    if st["recent_errors"]:
        import time as _time

        errs = Table("time (UTC)", "kind", "destination", "SOP instance", "message")
        for e in st["recent_errors"]:
            errs.add_row(_time.strftime("%Y-%m-%d %H:%M:%S", _time.gmtime(e["at"])), e["kind"],
                         e["destination"] or "", e["sop_instance_uid"] or "", e["message"] or "")
        console.print(errs)

