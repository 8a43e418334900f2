"""``radroute classify``: anatomy, view or modality of every image in files and folders."""
from __future__ import annotations

import csv
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Optional

import typer

from radroute.inference.record import Prediction

FORMATS = ("table", "csv", "jsonl")
CSV_FIELDS = ["path", "frame", "sop_instance_uid", "series_instance_uid", "model", "model_version",
              "task", "label", "score", "abstained", "body_part", "error_type", "error_message"]


def _err(msg: str) -> None:
    typer.echo(msg, err=True)


# ---- output --------------------------------------------------------------
def csv_rows(record: Prediction) -> Iterator[dict]:
    """One CSV row per task of an image record (one row with the error for a failed input)."""
    base = {"path": record.path, "frame": record.frame, "sop_instance_uid": record.sop_instance_uid,
            "series_instance_uid": record.series_instance_uid, "model": record.model,
            "model_version": record.model_version, "body_part": record.body_part}
    err = record.error or {}
    base.update(error_type=err.get("type"), error_message=err.get("message"))
    if not record.predictions:
        yield {**base, "task": None, "label": None, "score": None, "abstained": None}
        return
    for task, pred in record.predictions.items():
        yield {**base, "task": task, "label": pred.label, "score": f"{pred.score:.4f}",
               "abstained": pred.abstained}


def table_line(record: Prediction) -> str:
    """A fixed-width, human-readable line for one record."""
    where = record.path or "<array>"
    if record.frame is not None:
        where += f"[{record.frame}]"
    if record.error:
        return f"{where}  ERROR {record.error['type']}: {record.error['message']}"
    preds = "  ".join(f"{task}={p.label} ({p.score:.2f}{', abstained' if p.abstained else ''})"
                      for task, p in (record.predictions or {}).items())
    return f"{where}  {record.model}  {preds}  body_part={record.body_part}"


class Writer:
    """Streams records to a file or stdout in one of :data:`FORMATS`."""

    def __init__(self, fmt: str, stream: IO[str], write_header: bool = True):
        self.fmt, self.stream = fmt, stream
        self.csv = None
        if fmt == "csv":
            self.csv = csv.DictWriter(stream, fieldnames=CSV_FIELDS, lineterminator="\n")
            if write_header:
                self.csv.writeheader()

    def write(self, record: Prediction) -> None:
        if self.fmt == "jsonl":
            self.stream.write(json.dumps(record.to_dict()) + "\n")
        elif self.fmt == "csv":
            for row in csv_rows(record):
                self.csv.writerow({k: ("" if v is None else v) for k, v in row.items()})
        else:
            self.stream.write(table_line(record) + "\n")


# ---- resume --------------------------------------------------------------
def done_paths(out: Path, fmt: str) -> set[str]:
    """Paths already in a previous output; a partial last line (killed run) is cut off first."""
    if not out.is_file() or out.stat().st_size == 0:
        return set()
    data = out.read_bytes()
    if not data.endswith(b"\n"):
        with open(out, "r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
    done: set[str] = set()
    with open(out, newline="") as f:
        if fmt == "csv":
            done = {row["path"] for row in csv.DictReader(f) if row.get("path")}
        elif fmt == "jsonl":
            for line in f:
                try:
                    done.add(json.loads(line)["path"])
                except (ValueError, KeyError, TypeError):
                    continue
        else:
            raise typer.BadParameter("--resume needs --format jsonl or csv")
    return done


# ---- the command ---------------------------------------------------------
def classify(
    paths: list[Path] = typer.Argument(..., help="Files or folders (searched recursively)."),
    model: Optional[str] = typer.Option(
        None, "--model", "-m", help="Bundled model name, package folder or .onnx file "
        "[default: chosen per file from its DICOM Modality]."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, csv or jsonl."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Write here instead of stdout."),
    threshold: Optional[float] = typer.Option(
        None, help="Abstain when a task's top probability is below this [default: the model's "
        "calibrated threshold]."),
    backend: str = typer.Option("auto", help="torch, onnx, or auto (onnx when the package ships "
                                "model.onnx)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1),
    workers: Optional[int] = typer.Option(None, "--workers", min=0,
                                          help="Decode processes (0: decode in this process) "
                                          "[default: one per core but one]."),
    threads: Optional[int] = typer.Option(None, help="Threads of the model runtime [default: 1 "
                                          "with decode workers, else the runtime's own]."),
    slice_: Optional[int] = typer.Option(None, "--slice", help="Only this slice of a NIfTI "
                                         "volume / frame of a multi-frame file [default: all]."),
    resume: bool = typer.Option(False, help="With --out, skip inputs already in the file."),
    sr: Optional[Path] = typer.Option(None, "--sr", help="Also write a DICOM Comprehensive SR "
                                      "(TID 1500) per classified DICOM file: DIR/<SOPInstanceUID>.dcm."),
    progress: bool = typer.Option(True, help="Show a progress bar on stderr."),
) -> None:
    """Classify the anatomy, view or modality of every image in PATHS.

    One record per image (each frame of a multi-frame file, each slice of a NIfTI volume);
    a file that cannot be read gets an error record and the run goes on.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from radroute.errors import RadrouteError
    from radroute.inference import load_model
    from radroute.inference.pipeline import default_workers
    from radroute.io import find_files

    if fmt not in FORMATS:
        raise typer.BadParameter(f"--format must be one of {', '.join(FORMATS)}")
    if resume and out is None:
        raise typer.BadParameter("--resume needs --out")
    if backend not in ("auto", "torch", "onnx"):
        raise typer.BadParameter("--backend must be auto, torch or onnx")
    n_workers = default_workers() if workers is None else workers
    if threads is None and n_workers > 0:
        threads = 1  # the cores are busy decoding; more model threads would only contend
    try:
        predictor = load_model(model or "auto", backend, threshold=threshold, threads=threads)
    except RadrouteError as exc:
        _err(f"error: {exc}")
        raise typer.Exit(2) from exc
    if model is None:
        _err(f"no --model: {predictor.policy.describe()}")
    if threads and predictor.uses_torch:
        import torch

        torch.set_num_threads(threads)

    inputs = [str(p) for p in find_files(paths)]
    skipped = 0
    if resume:
        done = done_paths(out, fmt)
        skipped = sum(p in done for p in inputs)
        inputs = [p for p in inputs if p not in done]
    frames = "all" if slice_ is None else slice_

    append = resume and out is not None and out.is_file() and out.stat().st_size > 0
    stream = open(out, "a" if append else "w", newline="") if out else sys.stdout
    writer = Writer(fmt, stream, write_header=not append)
    n_images = n_errors = n_abstained = n_sr = 0
    if sr is not None:
        from radroute.inference.sr import write_sr
    start = time.perf_counter()
    console = Console(stderr=True)
    bar = Progress(TextColumn("classify"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                   TimeRemainingColumn(), console=console, disable=not progress, transient=False)
    try:
        with bar:
            task = bar.add_task("classify", total=len(inputs))
            for records in predictor.iter_inputs(inputs, batch_size=batch_size, workers=n_workers,
                                                 frames=frames):
                for rec in records:
                    writer.write(rec)
                    n_errors += rec.error is not None
                    n_images += rec.error is None
                    n_abstained += bool(rec.abstained)
                if sr is not None:
                    try:
                        n_sr += write_sr(records, sr) is not None
                    except Exception as exc:  # noqa: BLE001 - one SR never stops the run
                        _err(f"sr: {records[0].path}: {exc}")
                bar.advance(task, 1)
            stream.flush()
    finally:
        if out:
            stream.close()
    elapsed = time.perf_counter() - start
    rate = n_images / elapsed if elapsed > 0 else 0.0
    _err(f"classified {n_images} images from {len(inputs)} inputs in {elapsed:.1f} s "
         f"({rate:.1f} images/s); {n_errors} errors, {n_abstained} abstained"
         + (f"; {skipped} inputs skipped (already in {out})" if resume else "")
         + (f"; {n_sr} SRs written to {sr}" if sr is not None else ""))
