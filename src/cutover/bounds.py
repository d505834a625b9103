"""The accepted range of every numeric option, and the one check that enforces it.

The CLI checks each option with :func:`check` while parsing, so a bad value is refused
before a lab is built or anything is changed; :class:`~cutover.migration.context.
MigrationOptions` and the bench plan check again with the same bounds, so a program that
calls the core directly gets the same answer. Upper bounds catch typos (seconds given as
milliseconds) rather than physics: each says why it is where it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from cutover.errors import InputError


@dataclass(frozen=True)
class Bound:
    """``low <= value <= high`` (``low < value`` when ``low_open``), in ``unit``."""

    name: str
    low: float
    high: float
    unit: str
    low_open: bool = False
    integer: bool = False
    why: str = ""

    def describe(self) -> str:
        low = f"> {self.low:g}" if self.low_open else f">= {self.low:g}"
        kind = "a whole number" if self.integer else "a number"
        return f"{kind} {low} and <= {self.high:g}{' ' + self.unit if self.unit else ''}"


COPY_MS = Bound("--copy-ms", 0, 600_000, "ms", why="memory-copy phase; 10 min at most")
PAUSE_MS = Bound("--pause-ms", 0, 60_000, "ms", why="stop-and-copy window")
READY_TIMEOUT_S = Bound("--ready-timeout", 0, 3600, "s", low_open=True,
                        why="how long the switchover may wait for readiness")  # fmt: skip
ACTIVATION_TIMEOUT_S = Bound("--activation-timeout", 0, 3600, "s", low_open=True,
                             why="how long to wait for the destination to become the only "
                                 "chassis after the switchover")  # fmt: skip
RUNS = Bound("--runs", 1, 1000, "", integer=True, why="migrations per strategy and condition")
INTERVAL_MS = Bound("--interval-ms", 0.5, 1000, "ms",
                    why="probe interval: below 0.5 ms the prober's loop cannot keep time "
                        "on 2 cores; above 1 s a blackout cannot be resolved")  # fmt: skip
CHASSIS = Bound("--chassis", 3, 99, "", integer=True,
                why="a VM's source, its destination and the client's own chassis")  # fmt: skip
GUEST_RAM_MB = Bound("--guest-ram", 64, 4096, "MiB", integer=True,
                     why="QEMU guest RAM: the kernel + initramfs need ~50 MiB; more only "
                         "lengthens TCG pre-copies")  # fmt: skip
MAX_BANDWIDTH_MIB = Bound("--max-bandwidth", 1, 100_000, "MiB/s",
                          why="QEMU migration bandwidth cap")


def check(bound: Bound, value: float) -> float:
    """``value`` if it lies within ``bound``; else :class:`InputError` naming the option,
    the range and the value."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and bound.integer:
        ok = float(value).is_integer()
    if ok:
        ok = (value > bound.low if bound.low_open else value >= bound.low) and value <= bound.high
    if not ok:
        raise InputError(
            f"{bound.name} {value!r}: give {bound.describe()}"
            + (f" ({bound.why})" if bound.why else "")
        )
    return value


def parse(bound: Bound, text: str) -> float:
    """Parse a command-line value and :func:`check` it."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(
            f"{bound.name} {text!r} is not a number: give {bound.describe()}"
        ) from None
    return check(bound, int(value) if bound.integer and value.is_integer() else value)
