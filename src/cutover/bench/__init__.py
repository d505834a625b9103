"""Benchmarking: the measured outcome of repeated live migrations, per strategy.

A bench run is only worth something if its numbers can be re-read, compared and
published later, so this package keeps three concerns apart: :mod:`.results` is the
versioned on-disk format (``bench.json``), :mod:`.stats` turns runs into medians
without touching I/O, and :mod:`.report` renders what a person reads (plots and
Markdown). :mod:`.environment` records the software the numbers were measured on,
because an OVN or kernel upgrade alone can move a blackout by an order of magnitude.
"""
