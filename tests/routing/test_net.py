"""The pynetdicom internals the router patches are still there (pynetdicom is pinned in CI)."""
from __future__ import annotations

import importlib
import socket

from radroute.routing.net import PATCHED, configure_pynetdicom


def test_patched_methods_exist():
    for module, cls, method in PATCHED:
        assert callable(getattr(getattr(importlib.import_module(module), cls), method)), (module, cls, method)


def test_sockets_get_tcp_nodelay():
    from pynetdicom import _config
    from pynetdicom.transport import AssociationServer

    configure_pynetdicom()
    configure_pynetdicom()  # idempotent: not wrapped twice
    assert _config.STORE_SEND_CHUNKED_DATASET is True
    server = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(server.getsockname())
    try:
        fake = type("FakeServer", (), {"socket": server, "ssl_context": None})()
        # the wrapped get_request calls the original (socketserver's accept) and sets the option
        sock, _ = AssociationServer.get_request(fake)
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        sock.close()
    finally:
        client.close()
        server.close()
