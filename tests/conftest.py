"""Suite-wide fixtures. Domain fixtures live in small plugin files under tests/fixtures/."""

from __future__ import annotations

pytest_plugins = [
    "tests.fixtures.leaks",
    "tests.fixtures.pg",
    "tests.fixtures.collector",
    "tests.fixtures.agent",
    "tests.fixtures.mqtt",
    "tests.fixtures.tcp_proxy",
    "tests.fixtures.devices",
    "tests.fixtures.http_faults",
    "tests.fixtures.threaded_collector",
]
