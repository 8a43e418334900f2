"""Real DICOM peers for the router tests and bench: Orthanc, dcmtk storescp/storescu, the router.

Every peer starts on free loopback ports, waits until it answers, and is always terminated
(context managers). ``TCP_NODELAY=1`` is set for dcmtk tools, or a Nagle stall dominates.
"""
from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pydicom
from pydicom.uid import generate_uid

from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]
DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"  # Debian orthanc-dicomweb


def missing_binaries(*names: str) -> list[str]:
    return [n for n in names if shutil.which(n) is None]


def wait_port(port: int, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


def _stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# ---- Orthanc -----------------------------------------------------------------------------------
class Orthanc:
    """An Orthanc server with its own storage in ``workdir``; REST helpers for the checks."""

    def __init__(self, workdir: Path, aet: str = "ORTHANC", dicom_port: int | None = None,
                 http_port: int | None = None, durable: bool = True,
                 users: dict[str, str] | None = None, dicomweb: bool = False):
        self.workdir = Path(workdir)
        self.durable = durable
        self.users = users or {}
        self.dicomweb = dicomweb
        self.aet = aet
        self.dicom_port = dicom_port or free_port()
        self.http_port = http_port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self) -> "Orthanc":
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "radroute-test", "DicomAet": self.aet,
            "HttpPort": self.http_port, "DicomPort": self.dicom_port,
            "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "StorageCompression": False, "DicomCheckCalledAet": False,
            "DicomAlwaysAllowStore": True, "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowFind": True,  # the router asks what arrived after a crash
            "UnknownSopClassAccepted": True, "Plugins": [], "SaveJobs": False,
            "HttpDescribeErrors": True, "ConcurrentJobs": 1,
            # fsync of each stored file (Orthanc's default); tests that only check contents
            # may turn it off to save time on a shared disk
            "SyncStorageArea": self.durable,
        }
        if self.users:
            config.update(AuthenticationEnabled=True, RegisteredUsers=self.users)
        if self.dicomweb:
            config["Plugins"] = [DICOMWEB_PLUGIN]
            config["DicomWeb"] = {"Enable": True, "Root": "/dicom-web/"}
        cfg_path = self.workdir / "config.json"
        cfg_path.write_text(json.dumps(config, indent=2))
        self.log = open(self.workdir / "orthanc.log", "ab")
        self.proc = subprocess.Popen(["Orthanc", str(cfg_path)], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited ({self.proc.returncode}); see {self.workdir}/orthanc.log")
            try:
                self.get("/system")
                wait_port(self.dicom_port, 10, self.proc)
                return self
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("Orthanc did not start within 60 s")

    def stop(self) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.proc = None
            self.log.close()

    def __enter__(self) -> "Orthanc":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def dicomweb_url(self) -> str:
        return f"{self.url}/dicom-web"

    # REST
    def _request(self, path: str, data: bytes | None = None) -> bytes:
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        if self.users:
            user, password = next(iter(self.users.items()))
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.read()

    def get(self, path: str, raw: bool = False):
        data = self._request(path)
        return data if raw else json.loads(data)

    def post(self, path: str, body) -> object:
        return json.loads(self._request(path, json.dumps(body).encode()))

    def instances(self) -> dict[str, str]:
        """SOPInstanceUID -> Orthanc id of every stored instance."""
        found = self.post("/tools/find", {"Level": "Instance", "Query": {}, "Expand": True})
        return {i["MainDicomTags"]["SOPInstanceUID"]: i["ID"] for i in found}

    def count(self) -> int:
        return int(self.get("/statistics")["CountInstances"])

    def file(self, orthanc_id: str) -> bytes:
        return self.get(f"/instances/{orthanc_id}/file", raw=True)


# ---- dcmtk -------------------------------------------------------------------------------------
class DcmtkStoreSCP:
    """dcmtk ``storescp +xa`` writing what it receives into ``folder``."""

    def __init__(self, folder: Path, aet: str = "STORESCP", port: int | None = None):
        self.folder = Path(folder)
        self.aet = aet
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "DcmtkStoreSCP":
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log = open(self.folder.parent / f"storescp-{self.port}.log", "ab")
        self.proc = subprocess.Popen(
            ["storescp", "+xa", "-aet", self.aet, "-od", str(self.folder), "-uf", "-v",
             str(self.port)], stdout=self.log, stderr=subprocess.STDOUT, env=DCMTK_ENV)
        wait_port(self.port, 30, self.proc)
        return self

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            _stop(self.proc)
            self.log.close()

    def received(self) -> dict[str, Path]:
        """SOPInstanceUID -> file for every file stored so far."""
        out = {}
        for p in self.folder.iterdir():
            if p.is_file():
                ds = pydicom.dcmread(p, stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
                out[str(ds.SOPInstanceUID)] = p
        return out


def storescu(files: list[Path], port: int, called: str, calling: str = "STORESCU",
             extra: tuple[str, ...] = (), timeout: float = 300) -> subprocess.CompletedProcess:
    """Send ``files`` with dcmtk ``storescu -v`` (one association); output in ``stdout``."""
    args = ["storescu", "-v", "-aet", calling, "-aec", called, *extra, "127.0.0.1", str(port),
            *map(str, files)]
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV)


#: storescu only proposes a compressed transfer syntax when told to: the option for each
STORESCU_PROPOSE = {
    "1.2.840.10008.1.2.4.50": "-xy", "1.2.840.10008.1.2.4.51": "-xx", "1.2.840.10008.1.2.4.57": "-xs",
    "1.2.840.10008.1.2.4.70": "-xs", "1.2.840.10008.1.2.4.80": "-xt", "1.2.840.10008.1.2.4.81": "-xu",
    "1.2.840.10008.1.2.4.90": "-xv", "1.2.840.10008.1.2.4.91": "-xw", "1.2.840.10008.1.2.5": "-xr",
    "1.2.840.10008.1.2.1.99": "-xd", "1.2.840.10008.1.2.2": "-xb",
}


def storescu_any(files: list[Path], port: int, called: str, calling: str = "STORESCU",
                 extra: tuple[str, ...] = ()) -> str:
    """Send files of any transfer syntax unchanged: one ``storescu`` run per compressed syntax
    (with the option that proposes it). Returns the concatenated ``-v`` output."""
    groups: dict[str, list[Path]] = {}
    for f in files:
        ts = str(pydicom.dcmread(f, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        groups.setdefault(STORESCU_PROPOSE.get(ts, ""), []).append(f)
    out = []
    for option, group in groups.items():
        r = storescu(group, port, called, calling, (*extra, option) if option else extra)
        out.append(r.stdout + r.stderr)
    return "\n".join(out)


_SENDING = re.compile(r"Sending file: (.+)$")
_RESPONSE = re.compile(r"Received Store Response( \((.+)\))?")


def acknowledged(output: str) -> list[str]:
    """Files of a ``storescu -v`` log that got a success (or warning) C-STORE response."""
    ok, current = [], None
    for line in output.splitlines():
        m = _SENDING.search(line)
        if m:
            current = m.group(1).strip()
            continue
        m = _RESPONSE.search(line)
        if m and current is not None:
            status = (m.group(2) or "Success")
            if status.startswith("Success") or status.startswith("Warning"):
                ok.append(current)
            current = None
    return ok


# ---- test instances ----------------------------------------------------------------------------
def distinct_copies(files: list[Path], folder: Path, copies: int = 1) -> list[Path]:
    """Part-10 copies of ``files`` with new SOPInstanceUIDs (pixel data untouched).

    Files without file meta get one. Each copy keeps its series, so series stay together.
    """
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, src in enumerate(files):
        ds = pydicom.dcmread(src, force=True)
        if "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
            from pydicom.dataset import FileMetaDataset
            from pydicom.uid import ImplicitVRLittleEndian

            ds.file_meta = FileMetaDataset()
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        for c in range(copies):
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
            dst = folder / f"{i:04d}_{c:04d}_{src.stem}.dcm"
            ds.save_as(dst, enforce_file_format=True)
            out.append(dst)
    return out


# ---- the router --------------------------------------------------------------------------------
ROUTER_CMD = [sys.executable, "-c", "import sys; from radroute.cli import main; sys.argv[0] = 'radroute'; main()"]


class RouterProcess:
    """``radroute serve --config CONFIG`` in a subprocess (JSON logs to ``log``)."""

    def __init__(self, config: Path, log: Path, port: int | None = None):
        self.config, self.logfile, self.port = Path(config), Path(log), port
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "RouterProcess":
        self._out = open(self.logfile.with_suffix(".stderr"), "ab")
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        self.proc = subprocess.Popen([*ROUTER_CMD, "serve", "--config", str(self.config),
                                      "--log-file", str(self.logfile)],
                                     stdout=self._out, stderr=subprocess.STDOUT, env=env)
        if self.port:  # wait for its log line: a bare TCP probe would hold an association slot
            deadline = time.monotonic() + timeout
            while not any(e["event"] == "scp_listening" for e in self.log_events()):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"router exited with {self.proc.returncode}; see {self.logfile}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"router not listening after {timeout}s")
                time.sleep(0.05)
        return self

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._out.close()

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM (graceful) and wait; returns the exit code."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode

    def __enter__(self) -> "RouterProcess":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def log_events(self) -> list[dict]:
        if not self.logfile.exists():
            return []
        events = []
        for line in self.logfile.read_text().splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:  # a line being written right now
                pass
        return events


@contextmanager
def running(*peers) -> Iterator[tuple]:
    """Enter several peers, always exiting the ones started."""
    started = []
    try:
        for p in peers:
            started.append(p.__enter__())
        yield tuple(started)
    finally:
        for p in reversed(started):
            p.__exit__(None, None, None)
