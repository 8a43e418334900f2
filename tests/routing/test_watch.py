"""The watched folder: rejected files keep their sub-folder and never overwrite each other."""
from __future__ import annotations

from pathlib import Path

from radroute.errors import NotDicomError
from radroute.routing.watch import FolderWatcher


def test_rejected_files_keep_their_place_and_are_not_overwritten(tmp_path):
    def ingest(path: Path):
        raise NotDicomError("not an instance", path)

    watcher = FolderWatcher(tmp_path, ingest, poll_seconds=0.1)
    for sub, text in (("a", "first"), ("b", "second"), ("a", "third")):
        (tmp_path / sub).mkdir(exist_ok=True)
        (tmp_path / sub / "notes.txt").write_text(text)
        watcher.scan_once()  # sees it
        watcher.scan_once()  # stable: taken, refused, moved
    rejected = tmp_path / ".rejected"
    assert (rejected / "a" / "notes.txt").read_text() == "first"
    assert (rejected / "b" / "notes.txt").read_text() == "second"
    assert (rejected / "a" / "notes.txt.1").read_text() == "third"
    assert not list(tmp_path.glob("[ab]/*"))
