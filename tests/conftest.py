"""Shared fixtures. Real servers start on free loopback ports and stop after the session."""

pytest_plugins = [
    "tests.fixtures.servers",
    "tests.fixtures.emulators",
    "tests.fixtures.sandbox",
    "tests.fixtures.telnyx_stub",
]
