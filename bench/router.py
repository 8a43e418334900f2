"""Router throughput and latency: storescu -> radroute serve -> Orthanc, beside storescu -> Orthanc.

Both paths end in the same Orthanc (fsync'd storage, its default) in the same run; each round
sends N fresh instances (copies of a real 512 x 512 CT slice with new UIDs) with one dcmtk
``storescu`` association (TCP_NODELAY=1). The router runs with classification on: every
instance goes through the model (micro-batched) before it is forwarded.

* direct: rate = N / (first "Sending file" .. last store response); latency per instance =
  its store response - its send (storescu -v lines, timestamped as they are read).
* router: rate = N / (first send .. last instance acknowledged by Orthanc to the router, from
  the journal's ``sent_at``); latency = Orthanc's acknowledgement to the router - the send.
  Under that saturating load the router acknowledges faster than Orthanc stores, so its
  latency is mostly queueing; a paced round (one ``storescu`` per instance at half the direct
  rate) measures both paths' latency without a queue.

    nice -n 10 .venv/bin/python bench/router.py [--n 300] [--rounds 2] [--model ct-mr-region]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pydicom

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.helpers import data_root, free_port  # noqa: E402
from tests.routing.peers import DCMTK_ENV, Orthanc, RouterProcess, distinct_copies  # noqa: E402


def send(files: list[Path], port: int, called: str) -> tuple[dict[str, float], dict[str, float]]:
    """storescu -v; returns (file -> send time, file -> success response time), wall clock."""
    proc = subprocess.Popen(["storescu", "-v", "-aet", "STORESCU", "-aec", called, "127.0.0.1", str(port),
                             *map(str, files)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1, env=DCMTK_ENV)
    sent, acked, current = {}, {}, None
    for line in proc.stdout:
        now = time.time()
        if "Sending file: " in line:
            current = line.split("Sending file: ", 1)[1].strip()
            sent[current] = now
        elif "Received Store Response" in line and current is not None:
            if "Success" in line or "(" not in line:
                acked[current] = now
            current = None
    proc.wait()
    return sent, acked


def send_paced(files: list[Path], port: int, called: str, interval: float):
    """One ``storescu`` per file, started every ``interval`` seconds (an unsaturated load)."""
    sent, acked, threads = {}, {}, []

    def one(f: Path) -> None:
        s, a = send([f], port, called)
        sent.update(s)
        acked.update(a)

    t0 = time.time()
    for i, f in enumerate(files):
        time.sleep(max(0.0, t0 + i * interval - time.time()))
        threads.append(threading.Thread(target=one, args=(f,)))
        threads[-1].start()
    for t in threads:
        t.join()
    return sent, acked


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def summary(label: str, n: int, t0: float, t1: float, latencies: list[float]) -> dict:
    rate = n / (t1 - t0)
    out = {"path": label, "n": n, "rate": rate, "p50_ms": 1000 * pct(latencies, 50),
           "p99_ms": 1000 * pct(latencies, 99)}
    print(f"  {label:<28} {rate:7.1f} inst/s   p50 {out['p50_ms']:7.1f} ms   p99 {out['p99_ms']:7.1f} ms",
          flush=True)
    return out


def direct_round(files, orthanc, interval: float | None = None) -> dict:
    if interval:
        sent, acked = send_paced(files, orthanc.dicom_port, orthanc.aet, interval)
    else:
        sent, acked = send(files, orthanc.dicom_port, orthanc.aet)
    assert len(acked) == len(files), f"direct: {len(acked)}/{len(files)} stored"
    lat = [acked[f] - sent[f] for f in acked]
    return summary("storescu -> Orthanc", len(files), min(sent.values()), max(acked.values()), lat)


def router_round(files, port, spool: Path, interval: float | None = None) -> dict:
    uid_of = {str(f): str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}
    sent, acked = send_paced(files, port, "RADROUTE", interval) if interval else send(files, port, "RADROUTE")
    assert len(acked) == len(files), f"router: {len(acked)}/{len(files)} acknowledged"
    want = set(uid_of.values())
    deadline = time.time() + 600
    while True:
        db = sqlite3.connect(f"file:{spool / 'journal.sqlite'}?mode=ro", uri=True)
        done = dict(db.execute("SELECT sop_instance_uid, sent_at FROM deliveries WHERE state='sent'"))
        db.close()
        if want <= set(done) or time.time() > deadline:
            break
        time.sleep(0.2)
    assert want <= set(done), f"router: {len(want & set(done))}/{len(want)} delivered"
    lat = [done[uid_of[str(f)]] - sent[str(f)] for f in files]
    t_ack = max(acked.values())
    if not interval:
        print(f"    (storescu -> router acknowledgements: {len(files) / (t_ack - min(sent.values())):.1f} inst/s)")
    return summary("storescu -> router -> Orthanc", len(files), min(sent.values()),
                   max(done[u] for u in want), lat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="instances per round")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--paced", type=int, default=60,
                    help="instances per path sent one per storescu at half the direct rate (latency)")
    ap.add_argument("--model", default=None, help="bundled name or package (default: ct-mr-region, "
                                                   "else chest-view, else a tiny random package)")
    ap.add_argument("--source", default="wg04/CT2_UNC.dcm", help="dicom_zoo file to copy")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, journal)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="radroute-bench-router-"))
    try:
        run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def run(args, work: Path) -> None:
    from radroute.models.package import bundled_names

    model = args.model or next((m for m in ("ct-mr-region", "chest-view") if m in bundled_names()), None)
    if model is None:
        from tests.inference.tiny import make_tiny_package

        make_tiny_package(work / "tiny")
        model = str(work / "tiny")
    from radroute.inference import load_model

    tasks = load_model(model).package.tasks
    task, classes = next(iter(tasks.items()))
    source = data_root() / "dicom_zoo" / "files" / args.source
    print(f"router bench: {args.n} x {args.source} per round, {args.rounds} rounds, model {model}, "
          f"{os.cpu_count()} CPUs (shared; load average {os.getloadavg()[0]:.1f})", flush=True)

    results = {"direct": [], "router": []}
    with Orthanc(work / "orthanc") as orthanc:
        port = free_port()
        spool = work / "spool"
        config = work / "router.toml"
        config.write_text(f"""
[router]
spool = "{spool}"

[scp]
ae_title = "RADROUTE"
host = "127.0.0.1"
port = {port}
max_associations = 64

[classifier]
model = "{model}"
batch_size = 16
max_wait_ms = 20
threads = 1

[[destinations]]
name = "orthanc"
type = "dicom"
host = "127.0.0.1"
port = {orthanc.dicom_port}
ae_title = "{orthanc.aet}"

[[rules]]
name = "classified"
destinations = ["orthanc"]
all = [ {{ task = "{task}", label = {list(classes)!r} }} ]

[[rules]]
name = "default"
default = true
destinations = ["orthanc"]
""".replace("'", '"'))
        with RouterProcess(config, work / "router.log", port):
            for r in range(args.rounds):
                print(f"round {r + 1}", flush=True)
                files = distinct_copies([source], work / f"direct{r}", args.n)
                results["direct"].append(direct_round(files, orthanc))
                files = distinct_copies([source], work / f"router{r}", args.n)
                results["router"].append(router_round(files, port, spool))
            if args.paced:
                rate = statistics.median(r["rate"] for r in results["direct"])
                interval = 2.0 / rate
                print(f"paced: one instance every {1000 * interval:.0f} ms (half the direct rate)", flush=True)
                files = distinct_copies([source], work / "paced-direct", args.paced)
                results["paced_direct"] = direct_round(files, orthanc, interval)
                files = distinct_copies([source], work / "paced-router", args.paced)
                results["paced_router"] = router_round(files, port, spool, interval)
        classified = sum(1 for line in (work / "router.log").read_text().splitlines()
                         if '"event": "routed"' in line and '"prediction": {' in line)
        assert orthanc.count() == 2 * (args.n * args.rounds + args.paced)
    direct = statistics.median(r["rate"] for r in results["direct"])
    routed = statistics.median(r["rate"] for r in results["router"])
    print(f"median rate: direct {direct:.1f} inst/s, through the router {routed:.1f} inst/s "
          f"-> ratio {routed / direct:.2f} (target >= 0.7); {classified} instances classified")


if __name__ == "__main__":
    main()
