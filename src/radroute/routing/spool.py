"""The spool: received instances as DICOM files, durable (fsync'd file and folder) before acknowledgment."""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a file's creation/rename durable: fsync the folder that holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_durable(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename) and durably (fsync)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def copy_durable(src: Path, dst: Path) -> None:
    """Copy ``src`` to ``dst`` atomically and durably."""
    tmp = dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:8]}.tmp")
    with open(src, "rb") as fin, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dst)
    fsync_dir(dst.parent)


class Spool:
    """Files under ``<root>/spool/<2 hex>/<uuid>.dcm``; the journal holds their paths."""

    def __init__(self, root: str | Path):
        self.dir = Path(root) / "spool"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = None

    def lock(self) -> bool:
        """Take the spool for this process (``False`` if another router holds it)."""
        import fcntl

        fd = os.open(self.dir.parent / "router.lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._lock_fd = fd
        return True

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock
            self._lock_fd = None

    def new_path(self) -> Path:
        name = uuid.uuid4().hex
        sub = self.dir / name[:2]
        if not sub.is_dir():
            sub.mkdir(exist_ok=True)
            fsync_dir(self.dir)
        return sub / f"{name}.dcm"

    def store_bytes(self, data: bytes) -> Path:
        """Durably store one encoded DICOM file; returns its spool path."""
        path = self.new_path()
        write_durable(path, data)
        return path

    def store_file(self, src: str | Path) -> Path:
        path = self.new_path()
        copy_durable(Path(src), path)
        return path

    def remove(self, path: str | Path) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

    def orphans(self, known: set[str]) -> list[Path]:
        """Spool files the journal does not know (a crash between the fsync and the commit)."""
        out = []
        for sub in self.dir.iterdir():
            if sub.is_dir():
                out += [p for p in sub.iterdir() if str(p) not in known]
        return out
