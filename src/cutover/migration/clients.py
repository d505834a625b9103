"""What a migration talks to: the NB, the SB, and each chassis through the chassis seam.

A chassis with an ``agent`` endpoint in the site is reached through its agent
(:class:`~cutover.chassis.agent_client.AgentChassis`): the orchestrator then opens no
connection to that chassis' local databases. One without is reached in this process
(:class:`~cutover.chassis.local.LocalChassis`), which only works where its unix sockets and
network namespace are visible (the lab on one machine).
"""

from __future__ import annotations

from dataclasses import dataclass

from cutover.chassis.base import Chassis
from cutover.chassis.local import LocalChassis
from cutover.ovsdb import tls
from cutover.ovsdb.nb import NbClient
from cutover.ovsdb.sb import SbClient
from cutover.site import ChassisEndpoint, Site


@dataclass
class SiteClients:
    nb: NbClient
    sb: SbClient
    chassis: dict[str, Chassis]

    @classmethod
    def connect(cls, site: Site) -> SiteClients:
        if site.ssl is not None:  # before the first ssl: connection (one set per process)
            tls.configure(site.ssl)
        nb, sb = NbClient(site.nb_remote), SbClient(site.sb_remote)
        return cls(nb=nb, sb=sb, chassis={c.name: chassis_for(c, sb) for c in site.chassis})


def chassis_for(endpoint: ChassisEndpoint, sb: SbClient) -> Chassis:
    """The seam's implementation for ``endpoint``: its agent if it has one, else local."""
    if endpoint.agent:
        from cutover.chassis.agent_client import AgentChassis  # httpx only when needed

        return AgentChassis(endpoint, sb)
    return LocalChassis(endpoint, sb)
