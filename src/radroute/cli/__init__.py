"""The ``radroute`` command: a thin shell over the library, one module per sub-command.

Command modules define plain functions and never import this module; the app is assembled here
from :data:`COMMANDS` (as pynetdicom's apps are thin shells over pynetdicom).
"""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import typer  # noqa: E402

from radroute.cli import (  # noqa: E402
    classify, evaluate, examples, export, inspect, models, profile, serve, train, web,
)

#: (module, function) of every sub-command, in ``radroute --help`` order.
COMMANDS = [
    (inspect, "inspect"), (examples, "examples"), (classify, "classify"), (export, "export"),
    (models, "models"), (serve, "serve"), (serve, "route"), (serve, "status"), (web, "web"),
    (evaluate, "evaluate"), (evaluate, "robustness"), (train, "train"), (profile, "profile"),
]

app = typer.Typer(
    name="radroute",
    help="Recognise the anatomy in medical images and route each image where it belongs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
for _module, _name in COMMANDS:
    app.command(_name)(getattr(_module, _name))


def main() -> None:  # console-script entry point
    app()
