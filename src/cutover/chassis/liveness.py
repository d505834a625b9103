"""Is the ovn-controller of a chassis alive? Watched by event, confirmed by a connection.

When ovn-controller dies, the flows it installed stay on br-int (``fail-mode=secure``):
a flow check then still passes - on flows nobody maintains. A migration that switches
over into such a destination is served by stale flows at first, and the activation after
it never completes (nobody claims the port as main chassis). So the readiness strategies
that read flows also require the controllers they depend on to be alive, and re-confirm
it right before the switchover.

How, without polling: OVS daemons serve JSON-RPC on their unixctl socket and keep a
client's connection open for as long as the client wants. :class:`ControllerLiveness`
opens one connection per watched controller (refused or missing: not running) and then
only listens: when the process dies the kernel closes its end and the listener
thread sees EOF at once - an event, like an OVSDB update. :meth:`confirm` is the other
half: a fresh connection per controller (sub-millisecond), for the moment before the
point of no return, when "no EOF seen yet" is not proof enough. Neither waits for a
reply: under load (L2) an ovn-controller's main loop can be busy for seconds, and a
first version that awaited ``version`` took 4 of 108 busy destinations for dead.

A paused controller (``debug/pause``, the lab's stall) still accepts: paused is slow, not
dead, and the readiness wait itself covers slow.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cutover.errors import ControllerDown, InvalidMigration
from cutover.site import ChassisEndpoint

CONNECT_TIMEOUT_S = 2.0

DeathCallback = Callable[[ControllerDown], None]


@dataclass(frozen=True)
class Watched:
    chassis: ChassisEndpoint
    role: str
    """Why the migration needs it: ``destination`` or ``peer``."""

    @property
    def ctl(self) -> str:
        if not self.chassis.controller_ctl:
            raise InvalidMigration(
                f"chassis {self.chassis.name} has no controller_ctl (ovn-controller's unixctl "
                "socket) in the site, so its liveness cannot be checked; add it or use claim"
            )
        return self.chassis.controller_ctl


def probe(ctl: str) -> None:
    """OSError unless a process listens on the unixctl socket ``ctl`` right now.

    A dead daemon's socket refuses the connection (or is gone); a live one accepts it even
    while its main loop is busy for seconds (an ovn-controller recomputing under load), so
    no reply is awaited: busy is slow, not dead, and the readiness wait covers slow."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CONNECT_TIMEOUT_S)
        sock.connect(ctl)


class ControllerLiveness:
    """Watch the ovn-controllers of ``watched`` from :meth:`start` until :meth:`stop`.

    ``on_death`` is called once per controller that dies, from the listener thread, with
    the :class:`~cutover.errors.ControllerDown` that :meth:`confirm` will raise from then
    on. Raises ControllerDown from :meth:`start` if one is not running already.
    """

    def __init__(self, watched: Sequence[Watched], on_death: DeathCallback) -> None:
        for w in watched:
            _ = w.ctl  # InvalidMigration now, before anything is connected
        self._watched = list(watched)
        self._on_death = on_death
        self._dead: dict[str, ControllerDown] = {}
        self._lock = threading.Lock()
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._stopping = False

    @property
    def names(self) -> list[str]:
        return [w.chassis.name for w in self._watched]

    def start(self) -> None:
        try:
            for w in self._watched:
                sock = self._connect(w)
                self._selector.register(sock, selectors.EVENT_READ, w)
        except BaseException:
            self.stop()
            raise
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._listen, name="controller-liveness",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def _connect(self, w: Watched) -> socket.socket:
        """Connect (alive: the process holds its listening socket) without waiting for a
        reply: a controller busy recomputing for seconds answers late but is not dead."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(CONNECT_TIMEOUT_S)
            sock.connect(w.ctl)
        except OSError as e:
            sock.close()
            raise ControllerDown(w.chassis.name, w.role, f"{w.ctl}: {e}") from e
        sock.setblocking(False)
        return sock

    def _listen(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select():
                if key.data is None:
                    return  # stop() woke us
                sock, w = key.fileobj, key.data
                assert isinstance(sock, socket.socket) and isinstance(w, Watched)
                try:
                    data = sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError as e:
                    data, reason = b"", f"control socket failed: {e}"
                else:
                    reason = "its control socket closed: the process exited"
                if data:
                    continue  # nothing is asked on this connection; ignore stray output
                self._selector.unregister(sock)
                sock.close()
                if not self._stopping:
                    self._died(ControllerDown(w.chassis.name, w.role, reason))

    def _died(self, down: ControllerDown) -> None:
        with self._lock:
            if down.chassis in self._dead:
                return
            self._dead[down.chassis] = down
        self._on_death(down)

    def dead(self) -> list[ControllerDown]:
        """Controllers seen dying since :meth:`start`."""
        with self._lock:
            return list(self._dead.values())

    def confirm(self) -> None:
        """Raise ControllerDown unless every watched controller is still there now."""
        for down in self.dead():
            raise down
        for w in self._watched:
            try:
                probe(w.ctl)
            except OSError as e:
                down = ControllerDown(w.chassis.name, w.role, f"{w.ctl}: {e}")
                self._died(down)
                raise down from e

    def stop(self) -> None:
        """Close every connection and end the listener (idempotent)."""
        if self._stopping:
            return
        self._stopping = True
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for key in list(self._selector.get_map().values()):
            if isinstance(key.fileobj, socket.socket):
                key.fileobj.close()
        self._selector.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
