"""cutover: VM live migration on OVN that loses no traffic, proven on real OVN.

Kept import-free on purpose: the guest emulator and the prober run as
``python -m cutover.guest.emulator`` inside chassis namespaces and must start fast.
"""

__version__ = "0.1.0"
