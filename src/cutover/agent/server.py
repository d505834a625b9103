"""Run the agent: validate its configuration, build the service, serve the API.

``--listen unix:/path/agent.sock`` (the lab: a socket in the lab directory, reachable from
the root namespace while the agent runs inside the chassis namespace) or
``--listen https://ADDRESS:PORT`` with ``--tls-cert``/``--tls-key`` (a real deployment;
``--tls-client-ca`` additionally requires client certificates). Plain ``http://`` on TCP
is refused: the API plugs devices on a hypervisor.
"""

from __future__ import annotations

import os
import signal
import ssl
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from cutover.errors import CutoverError, InputError, PrerequisiteError
from cutover.ovsdb.tls import check_remote, configure, uses_ssl
from cutover.site import ChassisEndpoint, SslFiles


@dataclass(frozen=True)
class AgentConfig:
    chassis: str
    ovs_remote: str
    sb_remote: str
    listen: str
    token_file: Path
    controller_ctl: str | None = None
    integration_bridge: str = "br-int"
    ofctl: tuple[str, ...] = ("ovs-ofctl",)
    """This node's ``ovs-ofctl`` command (the OVS that runs here; ``ChassisEndpoint.ofctl``)."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_client_ca: Path | None = None
    allow_faults: bool = False
    plugger: str = "os-vif"
    """``os-vif`` (the library, as nova-compute plugs) or ``tap`` (the same steps written
    out, for a node without os-vif)."""
    state_dir: Path | None = None
    """Where the agent keeps its os-vif configuration (default: beside the token file)."""
    ovsdb_ssl: SslFiles | None = None
    """This node's OVSDB client certificate, for an ``ssl:`` SB remote."""

    def check(self) -> None:
        """InputError for anything the agent could not serve with, before it starts."""
        if not self.ovs_remote.startswith("unix:"):
            raise InputError(f"--ovs-remote {self.ovs_remote!r}: the agent runs on its node "
                             "and reaches its Open_vSwitch DB over a unix: socket")  # fmt: skip
        if self.listen.startswith("unix:"):
            if self.tls_cert or self.tls_key:
                raise InputError("--tls-cert/--tls-key go with an https:// --listen address")
            _check_socket_path(self.listen)
        elif self.listen.startswith("https://"):
            if not (self.tls_cert and self.tls_key):
                raise InputError(f"--listen {self.listen} needs --tls-cert and --tls-key")
            host_port = self.listen[len("https://"):]
            host, _, port = host_port.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise InputError(f"--listen {self.listen}: give https://ADDRESS:PORT")
        else:
            raise InputError(f"--listen {self.listen!r}: give unix:/path or "
                             "https://ADDRESS:PORT (plain http is refused)")  # fmt: skip
        check_remote(self.sb_remote, "--sb-remote")
        if self.ovsdb_ssl is not None:
            self.ovsdb_ssl.check("--ovsdb-ssl-key/-cert/-ca:")
        elif uses_ssl(self.sb_remote):
            raise InputError(f"--sb-remote {self.sb_remote} is ssl: give --ovsdb-ssl-key, "
                             "--ovsdb-ssl-cert and --ovsdb-ssl-ca")  # fmt: skip
        if self.plugger not in ("os-vif", "tap"):
            raise InputError(f"--plugger {self.plugger!r}: choose os-vif or tap")
        read_token(self.token_file)

    def endpoint(self) -> ChassisEndpoint:
        """The chassis as the agent sees it: devices in its own namespace (netns None)."""
        return ChassisEndpoint(self.chassis, self.ovs_remote, self.integration_bridge,
                               controller_ctl=self.controller_ctl, ofctl=self.ofctl)  # fmt: skip


def _check_socket_path(listen: str) -> None:
    """The agent removes a stale socket at ``--listen unix:PATH`` before it binds: the path
    must be absolute and, if something is there, a socket (never a regular file or a
    directory, which the unlink would destroy or fail on)."""
    path = Path(listen[len("unix:"):])
    if not path.is_absolute():
        raise InputError(f"--listen {listen!r}: give an absolute socket path, unix:/path")
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise InputError(f"--listen {listen!r}: {e.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise InputError(f"--listen {listen!r}: {path} exists and is not a socket; give a "
                         "path for the agent's socket")  # fmt: skip


def read_token(path: Path) -> str:
    """The bearer token in ``path``; refused unless only its owner can read it."""
    try:
        st = path.stat()
        token = path.read_text().strip()
    except OSError as e:
        raise InputError(f"token file {path}: {e.strerror}") from None
    if stat.S_IMODE(st.st_mode) & 0o077:
        raise InputError(f"token file {path} is readable by others "
                         f"(mode {stat.S_IMODE(st.st_mode):o}); chmod 600 it")  # fmt: skip
    if len(token) < 16:
        raise InputError(f"token file {path} holds fewer than 16 characters")
    return token


def write_token(path: Path) -> str:
    """A new random token in ``path``, created with mode 0600."""
    token = os.urandom(24).hex()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def serve(config: AgentConfig) -> None:
    """Serve until SIGTERM/SIGINT; on the way out withdraw every published verdict. On
    the way in, end what an earlier run left (:meth:`NodeService.restart_cleanup`)."""
    config.check()
    if config.ovsdb_ssl is not None:
        configure(config.ovsdb_ssl)
    try:
        import uvicorn

        from cutover.agent.app import make_app
        from cutover.agent.service import NodeService
    except ImportError as e:
        raise PrerequisiteError(f"the agent needs its web stack ({e}); pip install cutover") from e
    plugger = None
    state = config.state_dir or config.token_file.parent
    if config.plugger == "os-vif":
        from cutover.agent.osvif import OsVifPlugger

        plugger = OsVifPlugger(state / f"os-vif-{config.chassis}.conf", config.ovs_remote,
                               config.integration_bridge)  # fmt: skip
    service = NodeService(config.endpoint(), config.sb_remote, config.allow_faults, plugger,
                          state / f"agent-state-{config.chassis}.json")  # fmt: skip
    try:
        service.check_identity()
    except CutoverError:
        service.close()
        raise
    for line in service.restart_cleanup():  # what an earlier run of this agent left
        print(f"cutover agent {config.chassis}: {line}", file=sys.stderr, flush=True)
    app = make_app(service, read_token(config.token_file))
    # uvloop and httptools (uvicorn's "standard" set, C): the verdict's hand-off from the
    # thread that made it to a waiting long poll is a loop wake-up and an HTTP response
    kwargs: dict[str, object] = {"log_level": "warning", "access_log": False,
                                 "timeout_graceful_shutdown": 2, "loop": "uvloop",
                                 "http": "httptools"}
    if config.listen.startswith("unix:"):
        sock = config.listen[len("unix:"):]
        Path(sock).unlink(missing_ok=True)
        kwargs["uds"] = sock
    else:
        host, _, port = config.listen[len("https://"):].rpartition(":")
        kwargs.update(host=host.strip("[]"), port=int(port), ssl_certfile=str(config.tls_cert),
                      ssl_keyfile=str(config.tls_key))  # fmt: skip
        if config.tls_client_ca:
            kwargs.update(ssl_ca_certs=str(config.tls_client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to the
    # handler it found: with the default one the process would die right there, before
    # the clean-up below (published verdicts, os-vif's privsep daemon). Found: ours.
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        uvicorn.run(app, **kwargs)  # type: ignore[arg-type]
    finally:
        service.close()
        if config.listen.startswith("unix:"):
            Path(config.listen[len("unix:"):]).unlink(missing_ok=True)
