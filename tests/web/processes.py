"""``radroute web`` in a subprocess, and where tests leave their screenshots."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.helpers import REPO
from tests.routing.peers import ROUTER_CMD


def artefact_dir() -> Path:
    """``$RADROUTE_TEST_ARTEFACTS`` or ``tests/artefacts`` (ignored by git)."""
    path = Path(os.environ.get("RADROUTE_TEST_ARTEFACTS", REPO / "tests" / "artefacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def keep_artefact(path: Path) -> Path:
    """Copy a test's file (a screenshot) to the artefact folder."""
    return Path(shutil.copy(path, artefact_dir() / path.name))


class WebProcess:
    """``radroute web --config CONFIG --port PORT`` until :meth:`stop`."""

    def __init__(self, config: Path, port: int, log: Path):
        self.config, self.port, self.log = config, port, log
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "WebProcess":
        self._out = open(self.log, "ab")
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        self.proc = subprocess.Popen([*ROUTER_CMD, "web", "--config", str(self.config), "--port", str(self.port)],
                                     stdout=self._out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"radroute web exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"radroute web not answering after {timeout} s")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode if self.proc else 0

    def __enter__(self) -> "WebProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
