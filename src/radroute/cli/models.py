"""``radroute models``: the models that ship with radroute."""
from __future__ import annotations

import json

import typer



def model_summary(name: str) -> dict:
    """Name, tasks and classes, size, version and headline validation metrics of a bundled model."""
    from radroute.models.package import ModelPackage

    pkg = ModelPackage.load(name)
    metrics = {}
    for task in pkg.tasks:
        m = (pkg.metrics or {}).get(task) or {}
        acc = m.get("accuracy") or {}
        metrics[task] = {"n": m.get("n"), "accuracy": acc.get("value"),
                         "accuracy_ci": [acc.get("ci_low"), acc.get("ci_high")],
                         "macro_f1": ((m.get("macro") or {}).get("f1") or {}).get("value"),
                         "abstention_coverage": (m.get("abstention") or {}).get("coverage")}
    return {
        "name": name, "architecture": pkg.architecture, "tasks": pkg.tasks,
        "input_size": pkg.preprocessing.get("size"),
        "size_mb": round(pkg.weights_path.stat().st_size / 1e6, 2),
        "version": pkg.version, "thresholds": pkg.thresholds, "metrics": metrics,
        "path": str(pkg.path),
    }


def models(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the bundled models: tasks, classes, size, version and validation metrics."""
    from rich.console import Console
    from rich.table import Table

    from radroute.models.package import bundled_names

    summaries = [model_summary(n) for n in bundled_names()]
    if as_json:
        typer.echo(json.dumps(summaries, indent=2))
        return
    table = Table(title="bundled models (model cards: MODEL_CARD.md beside the weights)")
    for col in ("name", "tasks: classes", "input", "size", "version", "validation"):
        table.add_column(col)
    for s in summaries:
        tasks = "\n".join(f"{t}: {', '.join(c)}" for t, c in s["tasks"].items())
        val = "\n".join(
            f"{t}: acc {m['accuracy']:.3f} "
            f"[{m['accuracy_ci'][0]:.3f}, {m['accuracy_ci'][1]:.3f}] (n={m['n']})"
            for t, m in s["metrics"].items() if m["accuracy"] is not None) or "-"
        table.add_row(s["name"], tasks, f"{s['input_size']} px", f"{s['size_mb']:.1f} MB",
                      s["version"], val)
    Console().print(table)
