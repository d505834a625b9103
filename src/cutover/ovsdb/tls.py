"""OVSDB over SSL/TLS: the process's certificate files, and a diagnosis when a remote refuses.

python-ovs keeps ONE set of SSL files per process (``ovs.stream.Stream``'s class
attributes, read whenever an ``ssl:`` stream opens, reconnections included), so
:func:`configure` is called once, before the first ``ssl:`` connection: by the CLI from
the site or config file, by the agent from its options. A second, different set is
refused: an IDL that reconnects later would silently present the other certificate.

When a connection to an ``ssl:`` remote fails, python-ovs only says "could not retrieve
schema". :func:`diagnose` then opens one TLS connection itself (Python's ``ssl``, the same
library python-ovs uses, with the same settings: TLS >= 1.2, peer certificate required,
no host name check - OVS checks the CA only) and says which side refused whom.

Remotes may be comma-separated lists (the members of a clustered database,
``ssl:10.0.0.1:6642,ssl:10.0.0.2:6642``), as ovsdb-server, ovn-controller and python-ovs
all accept: :func:`members` splits them.
"""

from __future__ import annotations

import json
import socket
import ssl

from ovs import stream as ovs_stream

from cutover.errors import InputError, OvsdbTlsError
from cutover.site import SslFiles

HANDSHAKE_TIMEOUT_S = 5.0
REMOTE_KINDS = ("unix", "tcp", "ssl")


def members(remote: str) -> list[str]:
    """``ssl:a:6642,ssl:b:6642`` -> ``["ssl:a:6642", "ssl:b:6642"]`` (a cluster's members)."""
    return [m.strip() for m in remote.split(",") if m.strip()]


def check_remote(remote: str, where: str) -> None:
    """InputError unless ``remote`` is a list of ``unix:PATH``, ``tcp:HOST:PORT`` or
    ``ssl:HOST:PORT`` (the active forms OVSDB clients accept)."""
    parts = members(remote)
    if not parts:
        raise InputError(f"{where} is empty: give e.g. ssl:10.0.0.1:6642")
    for m in parts:
        kind, _, rest = m.partition(":")
        if kind not in REMOTE_KINDS or not rest:
            raise InputError(f"{where} member {m!r}: give unix:PATH, tcp:HOST:PORT or "
                             "ssl:HOST:PORT (several: separated by commas)")  # fmt: skip
        if kind != "unix":
            host, _, port = rest.rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise InputError(f"{where} member {m!r}: give {kind}:HOST:PORT")


def uses_ssl(remote: str) -> bool:
    return any(m.startswith("ssl:") for m in members(remote))


_configured: SslFiles | None = None


def configure(files: SslFiles) -> None:
    """Set this process's OVSDB SSL files (python-ovs: ``Stream.ssl_set_*``)."""
    global _configured
    if _configured is not None and _configured != files:
        raise InputError(f"OVSDB SSL files are already set to {_configured} in this process; "
                         "one process uses one client certificate")  # fmt: skip
    ovs_stream.Stream.ssl_set_private_key_file(files.private_key)
    ovs_stream.Stream.ssl_set_certificate_file(files.certificate)
    ovs_stream.Stream.ssl_set_ca_cert_file(files.ca_cert)
    _configured = files


def reset() -> None:
    """Forget the files (tests that try another certificate in the same process)."""
    global _configured
    _configured = None
    ovs_stream.Stream.ssl_set_private_key_file(None)
    ovs_stream.Stream.ssl_set_certificate_file(None)
    ovs_stream.Stream.ssl_set_ca_cert_file(None)


def configured() -> SslFiles | None:
    return _configured


def require_configured(remote: str, schema: str) -> None:
    """InputError if ``remote`` has an ``ssl:`` member but no SSL files were given."""
    if uses_ssl(remote) and _configured is None:
        raise InputError(f"the {schema} database at {remote} is reached over SSL, but no client "
                         "certificate was given: set [ovsdb.ssl] private_key, certificate and "
                         "ca_cert in the config (agents: --ovsdb-ssl-key/-cert/-ca)")


def diagnose(remote: str, schema: str) -> OvsdbTlsError | None:
    """Why the ``ssl:`` members of ``remote`` refused us, as a cutover error naming the
    member and the remedy; None when a member accepts a TLS session and answers."""
    files = _configured
    if files is None:
        return None
    problems = []
    for m in members(remote):
        if not m.startswith("ssl:"):
            continue
        problem = _probe(m, files)
        if problem is None:
            return None
        problems.append(f"{m}: {problem}")
    if not problems:
        return None
    return OvsdbTlsError(f"the {schema} database refused the TLS session: "
                         + "; ".join(problems))


def _probe(member: str, files: SslFiles) -> str | None:
    """One TLS session to ``member`` and an OVSDB ``echo``: None if it answers, else what
    went wrong and what to do. TLS 1.3 servers check the client certificate after the
    handshake, so their refusal only shows when we read: hence the echo."""
    host, _, port = member[len("ssl:"):].rpartition(":")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_verify_locations(files.ca_cert)
        ctx.load_cert_chain(files.certificate, files.private_key)
    except (OSError, ssl.SSLError) as e:
        return (f"our own files do not load ({e}); check that private_key and certificate "
                "belong together and ca_cert is a CA certificate")
    try:
        raw = socket.create_connection((host.strip("[]"), int(port)),
                                       timeout=HANDSHAKE_TIMEOUT_S)  # fmt: skip
    except OSError as e:
        return f"cannot connect ({e.strerror or e}); check the address and that it listens"
    with raw:
        try:
            tls = ctx.wrap_socket(raw)
        except ssl.SSLCertVerificationError as e:
            return (f"its server certificate does not verify against our CA {files.ca_cert} "
                    f"({e.verify_message}); give the CA that signed the server's certificate "
                    "as ca_cert")
        except (ssl.SSLError, OSError) as e:
            return (f"the TLS handshake failed ({e}); check that it listens with pssl: and "
                    f"trusts the CA that signed our certificate {files.certificate}")
        with tls:
            try:
                tls.sendall(json.dumps({"method": "echo", "params": [], "id": 0}).encode())
                reply = tls.recv(4096)
            except (ssl.SSLError, OSError) as e:
                reply, error = b"", f" ({e})"
            else:
                error = ""
    if not reply:
        return (f"the server ended the session right after the handshake{error}: it refused "
                f"our certificate {files.certificate}, which must be signed by the CA the "
                "server trusts (its --ca-cert, ovs-pki's cacert.pem)")
    return None
