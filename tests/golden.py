"""Golden records: ``classify`` and ``route --dry-run`` over ``dicom_zoo`` with a seeded tiny model.

The fixture in ``tests/fixtures/golden.json`` was written by the code before the structural
refactor (``python -m tests.golden --model --write``; the model once); ``tests/test_golden.py`` checks that today's code
gives the same records. Paths are stored relative to the zoo (``<zoo>/...``) and ``<model>``
stands for the tiny package's folder, so the fixture does not depend on the machine.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from typer.testing import CliRunner

FIXTURE = Path(__file__).parent / "fixtures" / "golden.json"

RULES = """
[[destinations]]
name = "ct"
type = "folder"
path = "{out}/ct/{{label_region}}/{{SOPInstanceUID}}.dcm"

[[destinations]]
name = "mr"
type = "folder"
path = "{out}/mr"
correct_tags = true

[[destinations]]
name = "review"
type = "folder"
path = "{out}/review"

[[destinations]]
name = "rest"
type = "folder"
path = "{out}/rest/{{Modality}}"

[tag_correction]
body_part = true

[[rules]]
name = "xray-by-tags"
destinations = ["rest"]
all = [ {{ tag = "Modality", in = ["CR", "DX", "MG"] }} ]

[[rules]]
name = "head"
destinations = ["ct", "mr"]
all = [ {{ body_part = "head" }} ]

[[rules]]
name = "model-ct"
destinations = ["ct"]
all = [ {{ task = "modality", label = "CT", min_score = 0.5 }} ]

[[rules]]
name = "model-mr-abdomen"
destinations = ["mr"]
all = [ {{ task = "modality", label = "MR" }} ]
any = [ {{ task = "region", label = "abdomen" }}, {{ tag_body_part = "abdomen" }} ]

[[rules]]
name = "everything-else"
default = true
destinations = ["rest"]
"""


def zoo_files(zoo: Path) -> list[Path]:
    return sorted((zoo / "files").rglob("*.dcm"))


def _relative(value, zoo: str, model: str, out: str):
    if isinstance(value, str):
        return value.replace(zoo, "<zoo>").replace(model, "<model>").replace(out, "<out>")
    if isinstance(value, list):
        return [_relative(v, zoo, model, out) for v in value]
    if isinstance(value, dict):
        return {k: _relative(v, zoo, model, out) for k, v in value.items()}
    return value


def records(zoo: Path, model: Path, work: Path) -> dict[str, list[dict]]:
    """``{"classify": [...], "route_instance": [...], "route_series": [...]}`` of today's code."""
    from radroute.cli import app

    files = [str(p) for p in zoo_files(zoo)]
    runner = CliRunner()
    out: dict[str, list[dict]] = {}
    res = runner.invoke(app, ["classify", "--model", str(model), "--format", "jsonl", "--workers", "0",
                              "--no-progress", *files])
    assert res.exit_code == 0, res.output
    out["classify"] = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    for decision in ("instance", "series"):
        config = work / f"router-{decision}.toml"
        config.write_text(
            f'[router]\nspool = "{work / "spool"}"\ndecision = "{decision}"\nreview_destination = "review"\n'
            f'\n[classifier]\nmodel = "{model}"\nbatch_size = 8\nthreads = 1\n'
            + RULES.format(out=work / "out"))
        res = runner.invoke(app, ["route", "--dry-run", "--json", "-c", str(config), *files])
        assert res.exit_code in (0, 1), res.output
        out[f"route_{decision}"] = [json.loads(line) for line in res.stdout.splitlines()
                                    if line.startswith("{")]
    return _relative(out, str(zoo), str(model), str(work / "out"))


MODEL = Path(__file__).parent / "fixtures" / "golden_model"


def make_golden_model(zoo: Path, directory: Path = MODEL) -> Path:
    """The committed tiny package the fixture was made with: the seeded tiny net, its classifier
    replaced by random directions centred on the zoo's mean features, so that its answers vary
    from image to image (a random net's logits are nearly constant). Run once; committed."""
    import numpy as np
    import torch

    from radroute.inference import load_model
    from tests.inference.tiny import make_tiny_package

    package = make_tiny_package(directory, thresholds={"modality": 0.0, "region": 0.6})
    predictor = load_model(directory)
    arrays = []
    for path in zoo_files(zoo):
        try:
            arrays.append(predictor.preprocessing.load(path))
        except Exception:  # noqa: BLE001 - unreadable files have no features
            continue
    feats = predictor.features(np.stack(arrays))
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(package.num_outputs, feats.shape[1])) / np.sqrt(feats.shape[1])
    weights = package.state_dict()
    scale = 1.5 / (feats.std(0) + 1e-6)
    weights["classifier.weight"] = torch.tensor(weight * scale, dtype=torch.float32)
    weights["classifier.bias"] = torch.tensor(-(weight * scale) @ feats.mean(0), dtype=torch.float32)
    package.save(directory, weights)
    return directory


if __name__ == "__main__":  # python -m tests.golden --write
    import tempfile

    from tests.helpers import data_root

    zoo = data_root() / "dicom_zoo"
    if "--model" in sys.argv:
        make_golden_model(zoo)
    with tempfile.TemporaryDirectory() as tmp:
        result = records(zoo, MODEL, Path(tmp))
    if "--write" in sys.argv:
        FIXTURE.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
        print(f"wrote {FIXTURE}: " + ", ".join(f"{k} {len(v)}" for k, v in result.items()))
    else:
        print(json.dumps(result, indent=1, sort_keys=True))
