"""The ``radroute`` command: one Typer app, one module per sub-command."""
from __future__ import annotations

import importlib
import os

# python-gdcm breaks `import pydicom` when a folder named `dl` is on sys.path; nothing to do here,
# but keep imports lazy so `radroute --help` stays fast.
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import typer

app = typer.Typer(
    name="radroute",
    help="Recognise the anatomy in medical images and route each image where it belongs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def command_line(ctx: typer.Context) -> str:
    """The running command as a user could type it again: ``radroute CMD`` + the options given.

    Rebuilt from the parsed parameters (not ``sys.argv``, which is pytest's or torchrun's when the
    command is invoked from there), keeping only those given on the command line.
    """
    import shlex

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


#: sub-command modules; each defines its command(s) on ``app`` at import time.
COMMAND_MODULES = [
    "inspect",
    "examples",
    "classify",
    "export",
    "models",
    "serve",
    "evaluate",
    "train",
    "profile",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"radroute.cli.{_name}")


def main() -> None:  # console-script entry point
    app()
