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

#: sub-command modules; each defines its command(s) on ``app`` at import time.
COMMAND_MODULES = [
    "inspect",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"radroute.cli.{_name}")


def main() -> None:  # console-script entry point
    app()
