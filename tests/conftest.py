"""Shared fixtures. Real servers start on free loopback ports and stop after the session."""

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.sandbox",
    "tests.fixtures.telnyx_stub",
]
