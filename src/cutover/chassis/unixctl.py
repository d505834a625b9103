"""A minimal OVS/OVN unixctl client: one JSON-RPC request over the daemon's control socket.

``ovn-appctl`` is a process spawn (~10-15 ms on this machine); a fault injector that must
freeze ovn-controller *before* it sees a just-plugged port cannot afford that, so the
request is sent directly on the socket (sub-millisecond).
"""

from __future__ import annotations

import json
import socket
from typing import Any

from cutover.errors import ChassisUnreachable


def call(ctl_path: str, method: str, params: list[str] | None = None, timeout: float = 10.0) -> str:
    """Run ``method`` on the daemon behind ``ctl_path``; return its text reply.
    Raises :class:`~cutover.errors.ChassisUnreachable` if the socket does not answer."""
    request = json.dumps({"method": method, "params": params or [], "id": 0}).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(ctl_path)
            sock.sendall(request)
            reply = _read_reply(sock)
    except OSError as e:
        raise ChassisUnreachable(
            f"unixctl {method} at {ctl_path} failed ({e}); is the daemon running?"
        ) from e
    if reply.get("error") is not None:
        raise ChassisUnreachable(f"unixctl {method} at {ctl_path}: {reply['error']}")
    return str(reply.get("result") or "")


def _read_reply(sock: socket.socket) -> dict[str, Any]:
    """Read until one complete JSON object has arrived (the daemon keeps the socket open)."""
    decoder = json.JSONDecoder()
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            raise OSError("connection closed before a complete reply")
        buf += chunk
        try:
            obj, _ = decoder.raw_decode(buf.decode())
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if not isinstance(obj, dict):
            raise OSError(f"unexpected reply {obj!r}")
        return obj
