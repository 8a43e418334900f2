"""``radroute export``: a model package as an ONNX graph for ONNX Runtime."""
from __future__ import annotations

from pathlib import Path

import typer



def export(
    model: str = typer.Argument(..., help="Bundled model name or package folder."),
    onnx: Path = typer.Option(..., "--onnx", help="Write the ONNX graph here."),
    check: bool = typer.Option(True, help="Check ONNX Runtime against PyTorch (probabilities and "
                               "scaled logits within 1e-4)."),
) -> None:
    """Export MODEL to ONNX (dynamic batch; preprocessing and class names in its metadata).

    The file classifies on its own: `radroute classify --model OUT.onnx ...`.
    """
    from radroute.errors import RadrouteError
    from radroute.inference.onnx import export_onnx
    from radroute.models.package import ModelPackage

    try:
        path = export_onnx(ModelPackage.load(model), onnx, check=check)
    except RadrouteError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)"
               + ("; ONNX Runtime matches PyTorch to 1e-4" if check else ""))
