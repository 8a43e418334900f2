"""``radroute profile``: the slice-by-slice anatomy profile of a CT volume."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer



def profile(
    volume: Annotated[Path, typer.Argument(help="A NIfTI file or a DICOM series folder (CT).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: profile.csv, summary.json, profile.png.")],
    model: Annotated[str, typer.Option(help="Slice-region model: a bundled name or a package folder.")] = "ct-slice-region",
    modality: Annotated[Optional[str], typer.Option(
        help="Override the CT check (e.g. CT for a NIfTI volume not in HU-like range).")] = None,
    backend: Annotated[str, typer.Option(help="torch, onnx or auto.")] = "torch",
    batch_size: Annotated[int, typer.Option(help="Slices per model call.")] = 64,
    threads: Annotated[Optional[int], typer.Option(help="CPU threads for the model.")] = None,
    ordered: Annotated[bool, typer.Option(
        help="Keep regions in head-to-feet order when decoding (--no-ordered: any order).")] = True,
    plot: Annotated[bool, typer.Option(help="Write profile.png.")] = True,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
) -> None:
    """Classify every axial slice of a CT VOLUME and write where each body region lies.

    Slices are ordered superior -> inferior whatever the file order. A non-CT volume is refused
    (error code wrong_modality, exit status 2). The summary JSON is also printed on stdout.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from radroute.errors import RadrouteError
    from radroute.inference.profile import profile_volume
    from radroute.inference.profile_plot import write_profile
    from radroute.io import read_volume

    if backend not in ("auto", "torch", "onnx"):
        raise typer.BadParameter("--backend must be auto, torch or onnx")
    err = Console(stderr=True, soft_wrap=True)
    if threads and backend == "torch":
        import torch

        torch.set_num_threads(threads)  # torch's threads are the process's (ONNX Runtime: per model)
    try:
        vol = read_volume(volume)
        with Progress(TextColumn("profiling"), BarColumn(), MofNCompleteColumn(), TextColumn("slices"),
                      TimeElapsedColumn(), console=err, disable=not progress, transient=True) as bar:
            task = bar.add_task("profile", total=vol.voxels.shape[0])
            prof = profile_volume(vol, model, modality=modality, ordered=ordered, batch_size=batch_size,
                                  backend=backend, threads=threads,
                                  progress=lambda done, total: bar.update(task, completed=done))
        paths = write_profile(prof, vol, out, plot=plot)
    except RadrouteError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        print(json.dumps({"error": exc.to_dict()}), file=sys.stderr)
        raise typer.Exit(2) from exc
    for w in prof.warnings:
        err.print(f"warning: {w}", markup=False, highlight=False)
    for r in prof.regions:
        err.print(f"{r.name:>10}  slices {r.slice_start}-{r.slice_end}  z {r.z_start_mm} .. {r.z_end_mm} mm",
                  markup=False, highlight=False)
    err.print(f"body part: {prof.body_part} (DICOM {prof.body_part_examined}); wrote "
              + ", ".join(str(p) for p in paths.values()), markup=False, highlight=False)
    print(json.dumps(prof.summary()))
