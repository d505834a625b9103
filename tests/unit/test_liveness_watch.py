"""ControllerLiveness against a stand-in unixctl server (a real unix socket, no OVN)."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from cutover.chassis.liveness import ControllerLiveness, Watched
from cutover.errors import ControllerDown, InvalidMigration
from cutover.site import ChassisEndpoint


class FakeUnixctl:
    """Answers every JSON-RPC request like an OVS daemon and keeps connections open."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen()
        self.conns: list[socket.socket] = []
        self.requests: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        decoder = json.JSONDecoder()
        buf = ""
        while True:
            try:
                data = conn.recv(4096)
            except OSError:
                return
            if not data:
                return
            buf += data.decode()
            while buf:
                try:
                    req, end = decoder.raw_decode(buf)
                except json.JSONDecodeError:
                    break
                buf = buf[end:]
                self.requests.append(req["method"])
                conn.sendall(json.dumps({"result": "ovn-controller 23.03.1\n", "error": None,
                                         "id": req["id"]}).encode())  # fmt: skip

    def die(self) -> None:
        """What the kernel does when the daemon exits: every connection and the socket go."""
        self.server.close()
        for c in self.conns:
            c.shutdown(socket.SHUT_RDWR)
            c.close()
        Path(self.path).unlink()


def endpoint(name: str, ctl: str | None) -> ChassisEndpoint:
    return ChassisEndpoint(name, f"unix:/nonexistent/{name}/db.sock", controller_ctl=ctl)


def test_a_death_is_reported_at_once_and_confirm_fails_from_then_on(tmp_path: Path) -> None:
    hv2, hv3 = FakeUnixctl(tmp_path / "hv2.ctl"), FakeUnixctl(tmp_path / "hv3.ctl")
    deaths: list[ControllerDown] = []
    died = threading.Event()

    def on_death(down: ControllerDown) -> None:
        deaths.append(down)
        died.set()

    live = ControllerLiveness([Watched(endpoint("hv2", hv2.path), "destination"),
                               Watched(endpoint("hv3", hv3.path), "peer")], on_death)  # fmt: skip
    live.start()
    try:
        live.confirm()  # both are there
        assert hv2.requests == []  # connected, nothing asked: a busy controller is not dead
        hv3.die()
        assert died.wait(2.0), "no death event"
        assert [(d.chassis, d.role) for d in deaths] == [("hv3", "peer")]
        assert [d.chassis for d in live.dead()] == ["hv3"]
        with pytest.raises(ControllerDown, match="peer chassis hv3 is not running"):
            live.confirm()
    finally:
        live.stop()
        hv2.die()
    assert deaths[0].reason.startswith("its control socket closed")


def test_confirm_finds_a_death_the_listener_has_not_reported(tmp_path: Path) -> None:
    hv2 = FakeUnixctl(tmp_path / "hv2.ctl")
    live = ControllerLiveness([Watched(endpoint("hv2", hv2.path), "destination")],
                              lambda down: None)  # fmt: skip
    live.start()
    live.stop()  # no listener any more: only the round trip can tell
    hv2.die()
    with pytest.raises(ControllerDown, match="destination chassis hv2"):
        live.confirm()


def test_a_controller_that_is_not_running_fails_the_start(tmp_path: Path) -> None:
    live = ControllerLiveness([Watched(endpoint("hv2", str(tmp_path / "gone.ctl")),
                                       "destination")], lambda down: None)  # fmt: skip
    with pytest.raises(ControllerDown, match="hv2 is not running"):
        live.start()
    live.stop()  # idempotent after a failed start


def test_a_chassis_without_a_control_socket_is_refused_up_front() -> None:
    with pytest.raises(InvalidMigration, match="no controller_ctl"):
        ControllerLiveness([Watched(endpoint("hv2", None), "destination")], lambda down: None)


def test_a_busy_controller_that_never_answers_is_alive(tmp_path: Path) -> None:
    """Under load an ovn-controller's main loop answers late: connected means alive."""
    path = tmp_path / "busy.ctl"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()  # accepts (kernel backlog) but never reads or answers
    try:
        live = ControllerLiveness([Watched(endpoint("hv2", str(path)), "destination")],
                                  lambda down: None)  # fmt: skip
        live.start()
        live.confirm()
        assert live.dead() == []
        live.stop()
    finally:
        server.close()


def test_stop_before_death_reports_nothing(tmp_path: Path) -> None:
    hv2 = FakeUnixctl(tmp_path / "hv2.ctl")
    deaths: list[ControllerDown] = []
    live = ControllerLiveness([Watched(endpoint("hv2", hv2.path), "destination")],
                              deaths.append)  # fmt: skip
    live.start()
    live.stop()
    live.stop()
    hv2.die()
    assert deaths == [] and live.dead() == []
