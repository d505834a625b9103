"""The SSL lab's PKI, made with ``ovs-pki`` as an OVN operator would make it.

``ovs-pki init`` creates two CAs (``switchca``, ``controllerca``); every certificate of the
lab - the NB and SB servers, ovn-northd, each ovn-controller, each agent, the
orchestrator - is signed by ``switchca``, and every peer trusts exactly that CA
(``cacert.pem``). A ``rogue`` CA in its own directory signs one extra certificate that
nobody trusts: tests present it to show that a wrong certificate is refused.

Everything lives in ``<lab>/pki`` and goes with the lab directory.
"""

from __future__ import annotations

from pathlib import Path

from cutover.lab import host
from cutover.lab.topology import LabTopology
from cutover.site import SslFiles

CA = "switchca"
ORCHESTRATOR = "orchestrator"
NORTHD = "northd"
SERVERS = ("nb", "sb")


def _pki(topo: LabTopology, pki_dir: Path, *args: str) -> None:
    """``ovs-pki`` on ``pki_dir`` (it writes NAME-*.pem into its working directory)."""
    host.run([host.tool("ovs-pki"), f"--dir={pki_dir / 'ca'}", f"--log={pki_dir / 'pki.log'}",
              "--force", *args], cwd=pki_dir, timeout=topo.timeout_s)


def files(topo: LabTopology, name: str, pki_dir: Path | None = None) -> SslFiles:
    """The key, certificate and trusted CA of ``name`` (a chassis name, ``agent-hv1``,
    ``nb``, ``sb``, ``northd``, ``orchestrator``)."""
    d = pki_dir or topo.pki_dir
    return SslFiles(private_key=str(d / f"{name}-privkey.pem"),
                    certificate=str(d / f"{name}-cert.pem"),
                    ca_cert=str(d / "ca" / CA / "cacert.pem"))


def names(topo: LabTopology) -> list[str]:
    return [*SERVERS, NORTHD, ORCHESTRATOR, *(c.name for c in topo.chassis),
            *(f"agent-{c.name}" for c in topo.chassis)]


def build_pki(topo: LabTopology) -> None:
    """The lab's CA and one certificate per name; then the rogue CA and its one cert."""
    topo.pki_dir.mkdir(parents=True, exist_ok=True)
    _pki(topo, topo.pki_dir, "init")
    for name in names(topo):
        _pki(topo, topo.pki_dir, "req+sign", name, "switch")
    rogue = rogue_dir(topo)
    rogue.mkdir(exist_ok=True)
    _pki(topo, rogue, "init")
    _pki(topo, rogue, "req+sign", ORCHESTRATOR, "switch")


def rogue_dir(topo: LabTopology) -> Path:
    return topo.pki_dir / "rogue"


def rogue_files(topo: LabTopology) -> SslFiles:
    """A certificate signed by another CA, with the rogue CA as trust anchor too."""
    return files(topo, ORCHESTRATOR, rogue_dir(topo))


def in_use(topo: LabTopology) -> bool:
    """Whether the lab is an SSL lab: asked for (``topo.ssl``), or found built so by a
    ``Lab`` made from its prefix alone (e.g. restarting a controller in a later process)."""
    return topo.ssl or (topo.pki_dir / "ca" / CA / "cacert.pem").exists()


def server_options(topo: LabTopology, name: str) -> list[str]:
    """``ovsdb-server`` / ovn daemon options that load ``name``'s files."""
    f = files(topo, name)
    return [f"--private-key={f.private_key}", f"--certificate={f.certificate}",
            f"--ca-cert={f.ca_cert}"]
