"""``radroute inspect PATH...``: one record per file (tags, decodability, normalised body part)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer


#: Fields every JSON record has (null when unknown), in output order.
RECORD_FIELDS = [
    "path", "ok", "error", "format", "modality", "body_part_examined", "view_position", "body_part",
    "rows", "columns", "frames", "transfer_syntax", "photometric", "sop_instance_uid",
    "series_instance_uid", "study_instance_uid", "sop_class_uid", "bits_stored", "pixel_spacing",
    "patient_orientation", "image_laterality", "study_description", "series_description",
    "protocol_name", "patient_age", "results",
]
_CHECK_SIZE = 64  # decode at a small size: enough to prove the pixels decode, J2K decodes reduced


def inspect_file(path: str | Path, *, decode: bool = True) -> dict:
    """The inspect record of one file: header tags, and whether its pixels decode."""
    from radroute.errors import error_dict
    from radroute.io import read_header, read_image

    record: dict = dict.fromkeys(RECORD_FIELDS)
    record.update(path=str(path), ok=False)
    try:
        meta = read_header(path)
        record.update({k: v for k, v in meta.to_dict().items() if k in record and k != "path"})
        if meta.pixel_spacing is not None:
            record["pixel_spacing"] = list(meta.pixel_spacing)
        if decode:
            read_image(path, frame=None, size=_CHECK_SIZE)
        record["ok"] = True
    except Exception as exc:  # one bad file never stops the batch
        record["error"] = error_dict(exc)
    return record


def _table(records: list[dict]):
    from rich.table import Table

    from radroute.io.dicom import ts_short_name

    table = Table(show_lines=False, header_style="bold")
    for name in ("file", "ok", "modality", "body part tag", "view", "body_part", "size",
                 "syntax", "photometric", "error"):
        table.add_column(name, overflow="fold")
    paths = [r["path"] for r in records]
    try:
        root = Path(os.path.commonpath(paths)) if len(paths) > 1 else None
    except ValueError:
        root = None
    if root is not None and root.is_file():
        root = root.parent
    for r in records:
        shown = os.path.relpath(r["path"], root) if root else r["path"]
        size = f"{r['rows']}x{r['columns']}" if r["rows"] is not None else ""
        if r["frames"] and r["frames"] > 1:
            size += f"x{r['frames']}"
        table.add_row(
            shown, "[green]yes[/]" if r["ok"] else "[red]no[/]", r["modality"] or "",
            r["body_part_examined"] or "", r["view_position"] or "", r["body_part"] or "", size,
            ts_short_name(r["transfer_syntax"]) if r["transfer_syntax"] else (r["format"] or ""),
            r["photometric"] or "", r["error"]["type"] if r["error"] else "",
        )
    return table


def inspect(
    paths: Annotated[list[Path], typer.Argument(help="Files or folders (searched recursively).")],
    format: Annotated[str, typer.Option("--format", "-f", help="table or jsonl")] = "table",
    strict: Annotated[bool, typer.Option(help="Exit 1 when any file fails.")] = False,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file instead of stdout.")] = None,
    header_only: Annotated[bool, typer.Option(help="Read tags only; do not check the pixels decode.")] = False,
) -> None:
    """Show each image's tags, normalised body part and whether it can be read.

    A DICOM series folder or a multi-file input counts as its files; JSON fields are null when
    unknown. Exit status is 0 even when files fail, unless --strict.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    if format not in ("table", "jsonl"):
        raise typer.BadParameter("choose table or jsonl", param_hint="--format")
    from radroute.io import find_files

    files = list(find_files(paths, recursive=True))
    err = Console(stderr=True)
    records = []
    handle = open(out, "w", encoding="utf-8") if out else sys.stdout
    try:
        with Progress(TextColumn("inspect"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                      console=err, transient=True, disable=len(files) < 20) as progress:
            task = progress.add_task("inspect", total=len(files))
            for path in files:
                record = inspect_file(path, decode=not header_only)
                if record["modality"] == "SR":  # the prediction records of a radroute SR
                    from radroute.inference.sr import sr_results

                    record["results"] = sr_results(path)
                records.append(record)
                if format == "jsonl":
                    handle.write(json.dumps(record) + "\n")
                    handle.flush()
                progress.advance(task)
        if format == "table":
            console = Console(file=handle, width=None if handle.isatty() else 200)
            if len(records) > 1 and not handle.isatty():
                console.print(f"paths relative to {os.path.commonpath([r['path'] for r in records])}")
            console.print(_table(records))
    finally:
        if out:
            handle.close()
    failed = sum(not r["ok"] for r in records)
    err.print(f"{len(records)} files, {len(records) - failed} ok, {failed} failed")
    if strict and failed:
        raise typer.Exit(1)
