"""The pynetdicom settings the router relies on, applied once by :func:`configure_pynetdicom`.

pynetdicom has process-wide settings only, so the router sets them in this one place when the
service starts (not hidden in constructors):

* TCP_NODELAY on its sockets. A C-STORE is a small command PDU followed by the dataset PDUs and
  then a wait for the response: with Nagle's algorithm on, the second small write waits for the
  peer's delayed ACK (~40 ms), which caps a sender at a few dozen instances per second. dcmtk has
  ``TCP_NODELAY=1`` for the same reason; pynetdicom has no option, so the two places where it
  creates sockets (outgoing connections, accepted connections) are wrapped. ``tests/routing/
  test_net.py`` checks that these private methods still exist (pynetdicom is pinned in CI).
* ``STORE_SEND_CHUNKED_DATASET``: a spool file given to ``send_c_store`` as a path is streamed
  from disk as it is, never decoded and re-encoded.
"""
from __future__ import annotations

import socket

#: pynetdicom's private methods that create sockets (wrapped for TCP_NODELAY)
PATCHED = (("pynetdicom.transport", "AssociationSocket", "_create_socket"),
           ("pynetdicom.transport", "AssociationServer", "get_request"))
_done = False


def _nodelay(sock: socket.socket) -> socket.socket:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not a TCP socket (tests may use others)
        pass
    return sock


def configure_pynetdicom() -> None:
    """Idempotent: TCP_NODELAY on every pynetdicom socket created afterwards, chunked sending."""
    global _done
    if _done:
        return
    from pynetdicom import _config
    from pynetdicom.transport import AssociationServer, AssociationSocket

    create = AssociationSocket._create_socket
    get_request = AssociationServer.get_request

    def _create_socket(self, address):
        return _nodelay(create(self, address))

    def _get_request(self):
        sock, address = get_request(self)
        return _nodelay(sock), address

    AssociationSocket._create_socket = _create_socket
    AssociationServer.get_request = _get_request
    _config.STORE_SEND_CHUNKED_DATASET = True
    _done = True
