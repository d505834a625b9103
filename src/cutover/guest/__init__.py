"""Emulated guests: fake VMs that hold a TAP device the way QEMU does.

They exist so the migration core and the benchmarks can drive the exact on-wire
behaviour that matters for OVN (a TAP that appears late, a guest that stops answering
on pause, RARP announcements on resume) without booting real VMs. The guest processes
import only the stdlib and these light modules so they start fast inside namespaces.
"""
