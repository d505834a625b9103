"""Shared test set-up.

Integration tests need root and the OVS/OVN Debian packages. Under CI (``CI=true``) a
missing prerequisite is a failure, not a skip: a green run that skipped every real-OVN
test would prove nothing. Each integration module defines its own ``lab`` fixture (its own
prefix); ``clients`` connects to whichever lab the requesting module built.
"""

from __future__ import annotations

import os

import pytest

from cutover.lab import Lab
from cutover.migration.clients import SiteClients


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CI") != "true":
        return
    if os.geteuid() != 0:
        raise pytest.UsageError("CI runs the integration tests: run them as root")


@pytest.fixture
def clients(lab: Lab) -> SiteClients:
    """NB, SB and per-chassis vswitch connections to the requesting module's lab."""
    return SiteClients.connect(lab.site())
