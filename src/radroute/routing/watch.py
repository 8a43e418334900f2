"""A watched folder: files dropped in are spooled, journaled, then removed from the folder.

Polling (portable, works on network shares): a file is taken once its size and mtime have
not changed between two scans, so half-copied files are never read. Files that are not
DICOM are moved to ``<folder>/.rejected/`` (same sub-folder, never overwriting).
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable

from radroute.errors import RadrouteError
from radroute.routing.logs import log_event


class FolderWatcher:
    def __init__(self, folder: str | Path, ingest: Callable[[Path], object], poll_seconds: float = 1.0):
        self.folder = Path(folder)
        self.ingest = ingest
        self.poll = poll_seconds
        self._seen: dict[Path, tuple[int, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="radroute-watch", daemon=True)

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        log_event("watching", folder=str(self.folder), poll_seconds=self.poll)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _scan(self) -> dict[Path, tuple[int, float]]:
        found = {}
        for root, dirs, files in os.walk(self.folder):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            for name in files:
                if name.startswith(".") or name.endswith((".tmp", ".part")):
                    continue
                path = Path(root) / name
                try:
                    st = path.stat()
                except FileNotFoundError:
                    continue
                found[path] = (st.st_size, st.st_mtime)
        return found

    def scan_once(self) -> int:
        """Ingest the files that are stable since the previous scan; returns how many."""
        current = self._scan()
        stable = [p for p, sig in current.items() if self._seen.get(p) == sig]
        self._seen = {p: sig for p, sig in current.items() if p not in stable}
        for path in sorted(stable):
            if self._stop.is_set():
                break
            try:
                self.ingest(path)
                path.unlink()
            except RadrouteError as exc:
                target = self.reject(path)
                log_event("watch_rejected", level=30, file=str(path.relative_to(self.folder)),
                          moved_to=str(target.relative_to(self.folder)), error=exc.to_dict())
            except OSError as exc:  # spool full etc.: leave the file, retry next scan
                log_event("watch_failed", level=40, file=path.name, error=str(exc))
        return len(stable)

    def reject(self, path: Path) -> Path:
        """Move a file that is not a routable instance to ``.rejected/``, keeping its sub-folder
        and never overwriting an earlier one of the same name (``name.1``, ``name.2`` ...)."""
        target = self.folder / ".rejected" / path.relative_to(self.folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        candidate, n = target, 0
        while candidate.exists():
            n += 1
            candidate = target.with_name(f"{target.name}.{n}")
        os.replace(path, candidate)
        return candidate

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.scan_once()
            except OSError as exc:
                log_event("watch_failed", level=40, folder=str(self.folder), error=str(exc))
