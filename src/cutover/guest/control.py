"""The control channel of guest and prober processes: newline-delimited JSON over a unix socket.

Why a socket and not signals or files: the orchestrator needs request/response with
a timestamp taken *inside* the guest at the moment of the state change (pause,
resume), and it needs to reach a process started by an earlier CLI invocation. A
unix stream socket at a well-known path gives both; JSON lines keep it debuggable
with ``socat - UNIX:path``.

Protocol: each request is one JSON object with a ``"cmd"`` key on one line; each gets
exactly one JSON object line back, in order, with ``"ok": true|false``. A connection
may carry any number of requests. A handler may answer later (the prober's ``stop``
waits for late replies); further requests on that connection then wait their turn so
responses never reorder. Malformed input gets ``ok: false``, never a crash.

The server side runs inside the guest's :class:`~cutover.guest.runtime.EventLoop`;
:func:`exchange` is the matching blocking client used by the orchestrator.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from cutover.errors import GuestError
from cutover.guest.runtime import EventLoop, Pidfile, log

Reply = Callable[[dict[str, Any]], None]
Handler = Callable[[dict[str, Any], Reply], "dict[str, Any] | None"]
"""Returns the response, or None after keeping ``reply`` to answer later (exactly once)."""

MAX_LINE = 64 * 1024
SUN_PATH_MAX = 107


def error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


class _Conn:
    __slots__ = ("inbuf", "outbuf", "sock", "waiting")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.waiting = False


class ControlServer:
    """Serve ``handler`` on a unix socket at ``path`` from within ``loop``.

    As a context manager it binds on enter and, on exit, flushes queued responses
    (so ``stop`` is answered before the process exits) and removes the socket file
    if it is still the one it created.
    """

    def __init__(self, path: Path, loop: EventLoop, handler: Handler) -> None:
        self.path = path
        self._loop = loop
        self._handler = handler
        self._listener: socket.socket | None = None
        self._inode: int | None = None
        self._conns: dict[int, _Conn] = {}

    def __enter__(self) -> ControlServer:
        self._listener = _bind(self.path)
        self._inode = os.stat(self.path).st_ino
        self._loop.add_reader(self._listener.fileno(), self._accept)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self, flush_timeout_s: float = 1.0) -> None:
        deadline = time.monotonic() + flush_timeout_s
        for conn in list(self._conns.values()):
            if conn.outbuf:
                try:
                    conn.sock.setblocking(True)
                    conn.sock.settimeout(max(0.01, deadline - time.monotonic()))
                    conn.sock.sendall(conn.outbuf)
                except OSError:
                    pass
            self._drop(conn)
        if self._listener is not None:
            self._loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
            try:
                if os.stat(self.path).st_ino == self._inode:
                    self.path.unlink()
            except OSError:
                pass

    def _accept(self) -> None:
        assert self._listener is not None
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        sock.setblocking(False)
        conn = _Conn(sock)
        self._conns[sock.fileno()] = conn
        self._loop.add_reader(sock.fileno(), lambda: self._on_readable(conn))

    def _on_readable(self, conn: _Conn) -> None:
        try:
            data = conn.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn)
            return
        conn.inbuf += data
        self._process(conn)

    def _process(self, conn: _Conn) -> None:
        while not conn.waiting and conn.sock.fileno() in self._conns:
            end = conn.inbuf.find(b"\n")
            if end < 0:
                if len(conn.inbuf) > MAX_LINE:
                    self._send(conn, error(f"request line longer than {MAX_LINE} bytes"))
                    conn.inbuf.clear()
                return
            line = bytes(conn.inbuf[:end]).strip()
            del conn.inbuf[: end + 1]
            if line:
                self._dispatch(conn, line)

    def _dispatch(self, conn: _Conn, line: bytes) -> None:
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError) as e:
            self._send(conn, error(f"request is not valid JSON: {e}"))
            return
        if not isinstance(request, dict) or not isinstance(request.get("cmd"), str):
            self._send(conn, error('request must be a JSON object with a string "cmd"'))
            return
        answered = deferred = False

        def reply(response: dict[str, Any]) -> None:
            nonlocal answered
            if answered:
                return
            answered = True
            conn.waiting = False
            self._send(conn, response)
            if deferred:  # called later from the loop: serve what queued up meanwhile
                self._process(conn)

        conn.waiting = True
        try:
            response = self._handler(request, reply)
        except Exception as e:
            log(f"control handler failed on {request!r}: {type(e).__name__}: {e}")
            response = error(f"internal error handling {request['cmd']!r}: {e}")
        if response is not None:
            reply(response)
        else:
            deferred = True

    def _send(self, conn: _Conn, response: dict[str, Any]) -> None:
        if conn.sock.fileno() not in self._conns:
            return  # the client went away before its deferred answer was ready
        conn.outbuf += json.dumps(response, separators=(",", ":")).encode() + b"\n"
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        try:
            sent = conn.sock.send(conn.outbuf)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._drop(conn)
            return
        del conn.outbuf[:sent]
        if conn.outbuf:
            self._loop.add_writer(conn.sock.fileno(), lambda: self._flush(conn))
        else:
            self._loop.remove_writer(conn.sock.fileno())

    def _drop(self, conn: _Conn) -> None:
        fd = conn.sock.fileno()
        if fd >= 0:
            self._loop.remove_reader(fd)
            self._loop.remove_writer(fd)
            self._conns.pop(fd, None)
        conn.sock.close()


def _bind(path: Path) -> socket.socket:
    """Listen at ``path``; replace a stale socket file but never steal a live one."""
    if len(os.fsencode(path)) > SUN_PATH_MAX:
        raise GuestError(
            f"control socket path {path} is longer than {SUN_PATH_MAX} bytes; "
            f"use a shorter guest directory"
        )
    if path.exists():
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(1.0)
            probe.connect(str(path))
        except (ConnectionRefusedError, FileNotFoundError):
            path.unlink(missing_ok=True)
        except OSError as e:
            raise GuestError(f"control socket {path} exists and is unusable ({e})") from e
        else:
            raise GuestError(f"another process already serves control socket {path}; stop it first")
        finally:
            probe.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o600)
    sock.listen(16)
    sock.setblocking(False)
    return sock


def exchange(path: Path, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Send one request on a fresh connection and return the decoded response.

    Raises OSError (including TimeoutError) if the socket cannot be reached or does
    not answer in time, ValueError if the answer is not a JSON object.
    """
    deadline = time.monotonic() + timeout_s
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        buf = bytearray()
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no answer within {timeout_s:.1f} s")
            sock.settimeout(remaining)
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("connection closed before a full answer arrived")
            buf += chunk
            if b"\n" in chunk:
                break
    response = json.loads(buf[: buf.index(b"\n")])
    if not isinstance(response, dict):
        raise ValueError(f"answer is not a JSON object: {response!r}")
    return response


def serve(
    name: str,
    loop: EventLoop,
    handle: Handler,
    control: Path,
    pidfile: Path,
    start: Callable[[], str],
    close: Callable[[], None],
) -> int:
    """Run a guest process (emulator or prober) until it is told to stop.

    The socket comes first: binding refuses to steal a live guest's socket, and only then
    may the pidfile be overwritten. Requests queue until ``loop.run()`` serves them.
    ``start`` attaches the TAP and returns a banner for the log.
    """
    try:
        with ControlServer(control, loop, handle), Pidfile(pidfile):
            log(f"{name} up: {start()}")
            loop.run()
        log(f"{name} exiting: {loop.stop_reason}")
    except GuestError as e:
        print(f"{name}: {e}", file=sys.stderr)
        return 1
    finally:
        close()
        loop.close()
    return 0
