"""Neutron ML2/OVN's role: the port's binding during a migration."""
