"""Test helpers: the data root, a free-port helper (import as `from tests.helpers import ...`)."""
from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TORCH_HOME", str(Path(__file__).parent / ".no-torch-cache"))

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """``$RADROUTE_DATA`` or ``../shared/data`` beside the repository."""
    return Path(os.environ.get("RADROUTE_DATA", REPO.parent / "shared" / "data")).resolve()


def need_data(*parts: str) -> Path:
    """The path under the data root, or skip the test with a clear reason when absent."""
    path = data_root().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path} (set RADROUTE_DATA)")
    return path


def free_port() -> int:
    """A free TCP port on loopback (as pynetdicom's tests do)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread for tiny nets: on a busy shared CPU, OpenMP threads spin and slow them 5x.

    Autouse wherever a conftest or test module imports it.
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
