"""TCP_NODELAY on pynetdicom's sockets.

A C-STORE is a small command PDU followed by the dataset PDUs and then a wait for the
response: with Nagle's algorithm on, the second small write waits for the peer's delayed ACK
(~40 ms), which caps a sender at a few dozen instances per second. dcmtk has ``TCP_NODELAY=1``
for the same reason; pynetdicom has no option, so the router wraps the two places where it
creates sockets (outgoing connections, accepted connections).
"""
from __future__ import annotations

import socket

_done = False


def _nodelay(sock: socket.socket) -> socket.socket:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:  # not a TCP socket (tests may use others)
        pass
    return sock


def enable_tcp_nodelay() -> None:
    """Idempotent: every pynetdicom socket created afterwards has TCP_NODELAY set."""
    global _done
    if _done:
        return
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
    _done = True
