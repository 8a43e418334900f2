"""The model package's file layout (shared by the package and the weight loader)."""
from __future__ import annotations

from pathlib import Path

FORMAT = "radroute-model/1"
CONFIG_NAME = "radroute.json"
WEIGHTS_NAME = "weights.safetensors"
#: where the bundled packages live
BUNDLED_DIR = Path(__file__).parent / "bundled"
