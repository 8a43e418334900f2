"""End to end with real DICOM peers: dcmtk storescu -> ``radroute serve`` -> Orthanc + dcmtk storescp.

Also: refusals (calling AE, SOP class), a destination that is down then back, and a
``kill -9`` of the router while hundreds of instances stream in.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pydicom
import pytest

from radroute.routing.config import load_config
from radroute.routing.journal import Journal
from tests.helpers import free_port, need_data
from tests.routing.peers import (DCMTK_ENV, ROUTER_CMD, DcmtkStoreSCP, Orthanc, RouterProcess,
                                 acknowledged, distinct_copies, running, storescu, storescu_any)

pytestmark = pytest.mark.usefixtures("peers_available")


def write_config(path: Path, *, spool: Path, port: int, destinations: str, rules: str,
                 classifier: Path | None = None, scp_extra: str = "", router_extra: str = "") -> Path:
    text = f"""
[router]
spool = "{spool}"
{router_extra}

[scp]
ae_title = "RADROUTE"
host = "127.0.0.1"
port = {port}
allowed_calling_aes = ["STORESCU"]
{scp_extra}
"""
    if classifier is not None:
        text += f'\n[classifier]\nmodel = "{classifier}"\nbatch_size = 16\nmax_wait_ms = 20\nthreads = 1\n'
    path.write_text(text + destinations + rules)
    load_config(path)  # fail here, with the message, if the test wrote a bad config
    return path


def dicom_destination(name: str, peer, extra: str = "") -> str:
    return (f'\n[[destinations]]\nname = "{name}"\ntype = "dicom"\nhost = "127.0.0.1"\n'
            f'port = {peer.dicom_port if hasattr(peer, "dicom_port") else peer.port}\n'
            f'ae_title = "{peer.aet}"\n{extra}\n')


def wait_delivered(spool: Path, expect_instances: int, timeout: float = 120.0) -> dict:
    """Poll the journal until ``expect_instances`` are decided and nothing is queued/in flight."""
    deadline = time.monotonic() + timeout
    st: dict = {}
    while time.monotonic() < deadline:
        if (spool / "journal.sqlite").exists():
            j = Journal(spool, readonly=True)
            st = j.status()
            j.close()
            inst = st["instances"]
            decided = sum(v for k, v in inst.items() if k != "received")
            busy = sum(d.get("queued", 0) + d.get("sending", 0) + d.get("uncertain", 0)
                       for d in st["deliveries"].values())
            if decided >= expect_instances and not inst.get("received") and busy == 0:
                return st
        time.sleep(0.2)
    raise AssertionError(f"not delivered within {timeout}s: {st}")


def pixel_bytes(path_or_bytes) -> bytes:
    import io

    src = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes) else path_or_bytes
    return pydicom.dcmread(src, force=True)["PixelData"].value


def test_storescu_to_router_to_orthanc_and_storescp(tmp_path, zoo_copies, tiny_model):
    """Every real file lands where its rule says (the same decision as ``route --dry-run``),
    pixel data byte-identical, and no patient name or ID in the logs."""
    from radroute.routing.dry_run import plan

    port = free_port()
    orthanc = Orthanc(tmp_path / "orthanc")
    scp = DcmtkStoreSCP(tmp_path / "storescp")
    spool = tmp_path / "spool"
    with running(orthanc, scp):
        rules = """
[[rules]]
name = "ct"
destinations = ["orthanc"]
all = [ { tag = "Modality", equals = "CT" }, { tag = "SOPClassUID", equals = "CT Image Storage" } ]

[[rules]]
name = "mr-by-model"
destinations = ["orthanc", "storescp"]
all = [ { tag = "Modality", equals = "MR" }, { task = "modality", label = ["CT", "MR"], min_score = 0.5 } ]

[[rules]]
name = "xray"
destinations = ["storescp"]
any = [ { tag = "Modality", in = ["CR", "DX", "MG"] } ]

[[rules]]
name = "default"
default = true
destinations = ["orthanc"]
"""
        config = write_config(tmp_path / "router.toml", spool=spool, port=port, classifier=tiny_model,
                              destinations=dicom_destination("orthanc", orthanc)
                              + dicom_destination("storescp", scp), rules=rules)
        with RouterProcess(config, tmp_path / "router.log", port) as router:
            output = storescu_any(zoo_copies, port, "RADROUTE")
            acked = acknowledged(output)
            assert len(acked) == len(zoo_copies), output[-3000:]
            st = wait_delivered(spool, len(zoo_copies))
            status = subprocess.run([*ROUTER_CMD, "status", "--config", str(config), "--json"],
                                    capture_output=True, text=True, timeout=60)
            assert status.returncode == 0, status.stderr
            assert json.loads(status.stdout)["deliveries"] == st["deliveries"]
        events = router.log_events()
        in_orthanc = {uid: orthanc.file(oid) for uid, oid in orthanc.instances().items()}
        in_scp = scp.received()

    expected = {r["sop_instance_uid"]: r for r in plan(load_config(config), zoo_copies)}
    assert len(expected) == len(zoo_copies)
    want_orthanc = {u for u, r in expected.items() if "orthanc" in r["destinations"]}
    want_scp = {u for u, r in expected.items() if "storescp" in r["destinations"]}
    assert set(in_orthanc) == want_orthanc
    assert set(in_scp) == want_scp
    rules_used = {r["rule"] for r in expected.values()}
    assert {"ct", "mr-by-model", "xray", "default"} <= rules_used  # label rules ran the model
    # the tag-only rules, checked independently of the router's own decision code
    source = {}
    for path in zoo_copies:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        source[str(ds.SOPInstanceUID)] = path
    headers = {uid: pydicom.dcmread(p, stop_before_pixels=True) for uid, p in source.items()}
    for uid, ds in headers.items():
        if ds.Modality == "CT" and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2":
            assert uid in in_orthanc and uid not in in_scp
        if ds.Modality in ("CR", "DX", "MG"):
            assert uid in in_scp and uid not in in_orthanc
    routed = {e["sop_instance_uid"]: e["rule"] for e in events if e["event"] == "routed"}
    assert routed == {u: r["rule"] for u, r in expected.items()}

    for uid, data in in_orthanc.items():
        assert pixel_bytes(data) == pixel_bytes(source[uid]), uid
    for uid, path in in_scp.items():
        assert pixel_bytes(path) == pixel_bytes(source[uid]), uid

    log_text = (tmp_path / "router.log").read_text()
    for ds in headers.values():
        for kw in ("PatientName", "PatientID"):
            value = str(ds.get(kw, "") or "").strip()
            if len(value) >= 4:
                assert value not in log_text, f"{kw} in clear in the router log"
    assert any(e.get("patient", "").startswith("sha256:") for e in events if e["event"] == "received")


def test_refusals_are_dimse_statuses_and_logged(tmp_path, zoo_files):
    """A calling AE not on the allow-list is rejected at association; an SOP class not
    accepted gets C-STORE status 0x0122; both are logged; C-ECHO answers."""
    port = free_port()
    spool = tmp_path / "spool"
    folder = f'\n[[destinations]]\nname = "out"\ntype = "folder"\npath = "{tmp_path / "out"}"\n'
    config = write_config(tmp_path / "router.toml", spool=spool, port=port, destinations=folder,
                          rules='\n[[rules]]\nname = "all"\ndefault = true\ndestinations = ["out"]\n',
                          scp_extra='sop_classes = ["CT Image Storage"]\nmax_associations = 1')
    ct = need_data("dicom_zoo", "files", "pydicom", "CT_small.dcm")
    mr = need_data("dicom_zoo", "files", "pydicom", "MR_small.dcm")
    with RouterProcess(config, tmp_path / "router.log", port) as router:
        echo = subprocess.run(["echoscu", "-aet", "STORESCU", "-aec", "RADROUTE", "127.0.0.1", str(port)],
                              capture_output=True, text=True, env=DCMTK_ENV, timeout=60)
        assert echo.returncode == 0, echo.stderr
        bad_ae = storescu([ct], port, "RADROUTE", calling="INTRUDER")
        bad_sop = storescu([mr, ct], port, "RADROUTE", extra=("-nh",))
        wait_delivered(spool, 1)
        from pynetdicom import AE
        from pynetdicom.sop_class import Verification

        holder = AE(ae_title="STORESCU")
        holder.add_requested_context(Verification)
        held = holder.associate("127.0.0.1", port, ae_title="RADROUTE")  # the one allowed
        assert held.is_established
        try:
            too_many = storescu([ct], port, "RADROUTE")
        finally:
            held.release()
        assert router.stop() == 0  # SIGTERM: a graceful stop
    events = router.log_events()
    assert events[-1]["event"] == "router_stopped"

    out = bad_ae.stdout + bad_ae.stderr
    assert bad_ae.returncode != 0
    assert "Association Rejected" in out and "Calling AE Title Not Recognized" in out, out
    rejected = [e for e in events if e["event"] == "association_rejected"]
    assert rejected[0]["calling_ae"] == "INTRUDER"
    assert rejected[0]["reason"] == "calling_ae_not_allowed"

    out = too_many.stdout + too_many.stderr
    assert "Association Rejected" in out and "Local Limit Exceeded" in out, out
    assert any(e["reason"] == "max_associations_reached" for e in rejected)

    out = bad_sop.stdout + bad_sop.stderr
    assert acknowledged(out) == [str(ct)], out
    assert "Received Store Response (Refused: SOPClassNotSupported)" in out, out  # 0x0122
    refused = [e for e in events if e["event"] == "store_refused"]
    assert len(refused) == 1 and refused[0]["status"] == "0x0122"
    assert refused[0]["sop_class"] == "1.2.840.10008.5.1.4.1.1.4" and refused[0]["calling_ae"] == "STORESCU"
    assert [p.name for p in (tmp_path / "out").iterdir()] == [
        f"{pydicom.dcmread(ct, stop_before_pixels=True).SOPInstanceUID}.dcm"]


def test_destination_down_queues_then_delivers(tmp_path, zoo_files):
    """Orthanc is not running: instances queue (no attempts burnt, not dead); once it starts
    on its port they are all delivered."""
    files = distinct_copies([need_data("dicom_zoo", "files", "pydicom", "MR_small.dcm")],
                            tmp_path / "in", copies=12)
    port = free_port()
    spool = tmp_path / "spool"
    orthanc = Orthanc(tmp_path / "orthanc")  # ports chosen, not started yet
    dest = dicom_destination("pacs", orthanc, "backoff_seconds = 0.2\nmax_backoff_seconds = 1.0\n"
                                              "health_check_seconds = 0.5\nmax_attempts = 2\n")
    config = write_config(tmp_path / "router.toml", spool=spool, port=port, destinations=dest,
                          rules='\n[[rules]]\nname = "all"\ndefault = true\ndestinations = ["pacs"]\n')
    try:
        with RouterProcess(config, tmp_path / "router.log", port) as router:
            assert len(acknowledged((r := storescu(files, port, "RADROUTE")).stdout + r.stderr)) == 12
            time.sleep(3.0)  # several failed probes: more than max_attempts
            j = Journal(spool, readonly=True)
            st = j.status()
            j.close()
            pacs = st["deliveries"]["pacs"]
            assert pacs.get("queued", 0) + pacs.get("sending", 0) == 12 and "dead" not in pacs
            assert any(e["kind"] == "destination_down" for e in st["recent_errors"])
            orthanc.start()
            st = wait_delivered(spool, 12, timeout=60)
            assert st["deliveries"]["pacs"] == {"sent": 12}
            assert orthanc.count() == 12
            # what the router asks after a crash: does the destination hold these? (C-FIND)
            from radroute.routing.destinations import DicomDestination
            from radroute.routing.journal import DeliveryRow

            ds = pydicom.dcmread(files[0], stop_before_pixels=True)
            tags = {k: str(ds.get(k)) for k in ("StudyInstanceUID", "SeriesInstanceUID")}
            rows = [DeliveryRow(u, "pacs", 0, 0, "", None, None, tags, None, None)
                    for u in (str(ds.SOPInstanceUID), "1.2.3.999")]
            held = DicomDestination(load_config(config).destinations["pacs"]).holds(rows)
            assert held == {str(ds.SOPInstanceUID): True, "1.2.3.999": False}
    finally:  # the router first: Orthanc waits for open associations when it stops
        orthanc.stop()
    events = [e["event"] for e in router.log_events()]
    assert "destination_down" in events and "destination_up" in events


def test_kill9_while_streaming_loses_nothing(tmp_path, tiny_model):
    """kill -9 the router while 520 distinct instances stream in (classification on); after a
    restart every instance that got a success response reaches Orthanc, each exactly once.
    The sender then retries the rest (as a modality would) and Orthanc ends with all 520."""
    files = distinct_copies([need_data("dicom_zoo", "files", "pydicom", "MR_small.dcm")],
                            tmp_path / "in", copies=520)
    port = free_port()
    spool = tmp_path / "spool"
    with Orthanc(tmp_path / "orthanc") as orthanc:
        config = write_config(
            tmp_path / "router.toml", spool=spool, port=port, classifier=tiny_model,
            destinations=dicom_destination("pacs", orthanc),
            rules='\n[[rules]]\nname = "by-model"\ndestinations = ["pacs"]\n'
                  'all = [ { task = "modality", label = ["CT", "MR"] } ]\n'
                  '\n[[rules]]\nname = "default"\ndefault = true\ndestinations = ["pacs"]\n')
        router = RouterProcess(config, tmp_path / "router.log", port).start()
        log = open(tmp_path / "storescu.log", "w")
        sender = subprocess.Popen(["storescu", "-v", "-aet", "STORESCU", "-aec", "RADROUTE", "127.0.0.1",
                                   str(port), *map(str, files)], stdout=log, stderr=subprocess.STDOUT,
                                  env=DCMTK_ENV)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = (tmp_path / "storescu.log").read_text().count("Received Store Response")
                if done >= 250:
                    break
                time.sleep(0.02)
            router.kill9()
            sender.wait(60)
        finally:
            if sender.poll() is None:
                sender.kill()
            log.close()
        delivered_before_kill = set(orthanc.instances())
        acked = set(acknowledged((tmp_path / "storescu.log").read_text()))
        assert 250 <= len(acked) < 520, "the kill should land while instances stream in"
        uid_of = {str(f): str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files}

        with RouterProcess(config, tmp_path / "router2.log", port):
            wait_delivered(spool, len(acked), timeout=120)
            stored = orthanc.instances()
            assert {uid_of[f] for f in acked} <= set(stored)
            assert orthanc.count() == len(stored)  # each once
            # the sender retries what was not acknowledged
            rest = [f for f in files if str(f) not in acked]
            r = storescu(rest, port, "RADROUTE")
            assert len(acknowledged(r.stdout + r.stderr)) == len(rest)
            st = wait_delivered(spool, 520, timeout=120)
            assert orthanc.count() == 520
            assert set(orthanc.instances()) == set(uid_of.values())
            assert st["deliveries"]["pacs"].get("sent") == 520
        # the kill left acknowledged instances undelivered: the restart had real work to resume
        assert {uid_of[f] for f in acked} - delivered_before_kill
        events = RouterProcess(config, tmp_path / "router2.log").log_events()
        started = next(e for e in events if e["event"] == "router_started")
        verified = [e for e in events if e["event"] == "uncertain_verified"]
        if started["uncertain_deliveries"]:  # a batch was in flight at the kill: Orthanc was asked
            assert verified and verified[0]["held"] + verified[0]["resend"] == started["uncertain_deliveries"]
            assert verified[0]["unknown"] == 0


def test_stow_rs_to_orthanc_dicomweb_with_basic_auth(tmp_path, zoo_copies):
    """STOW-RS through dicomweb-client to Orthanc's DICOMweb plugin with HTTP basic auth;
    a destination with a wrong password is unavailable (401): its instances queue, none die."""
    from radroute.routing.service import RouterService
    from tests.routing.peers import DICOMWEB_PLUGIN

    if not Path(DICOMWEB_PLUGIN).exists():
        pytest.skip("Orthanc DICOMweb plugin not installed (apt-get install orthanc-dicomweb)")
    files = [f for f in zoo_copies if f.name.split("_", 2)[2] in (
        "CT_small.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "CT1_JLSN.dcm")]
    assert len(files) == 4
    with Orthanc(tmp_path / "orthanc", users={"router": "s3cret"}, dicomweb=True) as orthanc:
        body = "".join(
            f'\n[[destinations]]\nname = "{name}"\ntype = "stow"\nurl = "{orthanc.dicomweb_url}"\n'
            f'username = "router"\npassword = "{pw}"\nbackoff_seconds = 0.2\nmax_backoff_seconds = 0.5\n'
            f'max_attempts = 1\n' for name, pw in (("web", "s3cret"), ("web-badauth", "wrong")))
        config = tmp_path / "router.toml"
        config.write_text(f'[router]\nspool = "{tmp_path / "spool"}"\n' + body
                          + '\n[[rules]]\nname = "all"\ndefault = true\ndestinations = ["web", "web-badauth"]\n')
        service = RouterService(load_config(config), start_sources=False).start()
        try:
            for f in files:
                service.ingest_file(f, "test")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                st = service.journal.status()
                if st["deliveries"].get("web") == {"sent": 4}:
                    break
                time.sleep(0.2)
            time.sleep(1.0)
            st = service.journal.status()
        finally:
            service.stop()
        stored = {uid: orthanc.file(oid) for uid, oid in orthanc.instances().items()}
    assert st["deliveries"]["web"] == {"sent": 4}
    bad = st["deliveries"]["web-badauth"]
    assert bad.get("queued", 0) + bad.get("sending", 0) == 4 and "dead" not in bad
    assert any(e["kind"] == "destination_down" and "401" in e["message"] for e in st["recent_errors"])
    for f in files:
        ds = pydicom.dcmread(f)
        assert pixel_bytes(stored[str(ds.SOPInstanceUID)]) == ds.PixelData
