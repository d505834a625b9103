"""Child processes that die with this process, even when it is SIGKILLed.

A long-lived helper (an ``ovs-ofctl monitor`` of a readiness wait) must not outlive the
process that reads it: a killed ``cutover migrate`` or agent would leave it running with
parent pid 1. Linux delivers ``PR_SET_PDEATHSIG`` when the *thread* that forked the child
exits, not the process (prctl(2)); so :func:`popen` forks from one thread that lives as
long as the process, whatever thread asks (an agent's request threads come and go).
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="child-spawner")
"""Its one worker thread is never retired (concurrent.futures keeps workers until
shutdown), so the children it forks get their death signal only when the process dies."""


def die_with(parent: int) -> Callable[[], None]:
    """``preexec_fn`` for a child of ``parent``: SIGKILL when the parent dies.

    If the parent died between the fork and the ``prctl`` (the child is already
    re-parented), the signal would never come: the child exits instead of running."""

    def preexec() -> None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(127)

    return preexec


def popen(argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen(argv, **kwargs)`` whose child is SIGKILLed when this process
    dies (see the module docstring). Raises what Popen raises (OSError)."""
    pid = os.getpid()
    future = _spawner.submit(lambda: subprocess.Popen(argv, preexec_fn=die_with(pid),
                                                      **kwargs))  # fmt: skip
    return future.result()
