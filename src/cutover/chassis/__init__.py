"""Acting on one chassis: its daemons' control channels and whether they are alive.

The floor beside :mod:`cutover.ovsdb`: what the migration core needs from a hypervisor
host besides its databases. Today it reaches the chassis locally (unix sockets the site
names); a per-node agent will serve the same operations over the network.
"""
