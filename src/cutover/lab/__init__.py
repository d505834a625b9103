"""A real OVN on one machine, for measuring migrations: central, underlay and N chassis.

The lab produces a :class:`cutover.site.Site` and nothing else leaks out of it: the migration
core never imports this package (it only ever sees the Site the lab writes to site.json).
"""

from cutover.lab.lab import Lab, LabState, LabStatus
from cutover.lab.stall import ControllerStall, StallRole, parse_stall
from cutover.lab.topology import ChassisSpec, LabTopology, PortSpec

__all__ = [
    "ChassisSpec",
    "ControllerStall",
    "Lab",
    "LabState",
    "LabStatus",
    "LabTopology",
    "PortSpec",
    "StallRole",
    "parse_stall",
]
