"""Shared test set-up: integration tests need root and the OVS/OVN Debian packages.

Under CI (``CI=true``) a missing prerequisite is a failure, not a skip: a green run that
skipped every real-OVN test would prove nothing.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CI") != "true":
        return
    if os.geteuid() != 0:
        raise pytest.UsageError("CI runs the integration tests: run them as root")
