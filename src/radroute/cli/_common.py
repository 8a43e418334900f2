"""Helpers the command modules share (no command lives here)."""
from __future__ import annotations

import shlex

import typer


def command_line(ctx: typer.Context) -> str:
    """The running command as a user could type it again: ``radroute CMD`` + the options given.

    Rebuilt from the parsed parameters (not ``sys.argv``, which is pytest's or torchrun's when the
    command is invoked from there), keeping only those given on the command line.
    """
    parts = ["radroute", ctx.info_name or ""]
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params[param.name]
        values = list(value) if isinstance(value, (list, tuple)) else [value]
        if param.param_type_name == "argument":
            parts += [str(v) for v in values]
            continue
        opt = max(param.opts, key=len)
        if getattr(param, "is_flag", False) and isinstance(value, bool):
            parts.append(opt if value else max(param.secondary_opts or [opt], key=len))
        else:
            for v in values:
                parts += [opt, str(v)]
    return " ".join(shlex.quote(p) for p in parts)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the :class:`typer.Exit` to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)
