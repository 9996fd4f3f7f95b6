"""Logging set-up: readable lines for people, one JSON object per line for machines.

Logs go to stderr; stdout is kept for the run summary and the demo's instructions.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import TextIO

from rich.console import Console

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def redact(text: str, secrets: Iterable[str]) -> str:
    """text with every known secret value (4 characters or more) replaced by ***."""
    for secret in secrets:
        if secret and len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


class RedactFilter(logging.Filter):
    """Replaces known secret values in a record's message (defence in depth: code never logs them)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s and len(s) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            message = record.getMessage()
            redacted = redact(message, self.secrets)
            if redacted != message:
                record.msg, record.args = redacted, None
        return True


def json_formatter() -> logging.Formatter:
    from pythonjsonlogger.json import JsonFormatter

    # Fields named in fmt appear in every line; extras passed with `extra=` are appended.
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp=True,
    )


def setup_logging(
    fmt: str = "text",
    level: str = "INFO",
    *,
    secrets: Iterable[str] = (),
    console: Console | None = None,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Replace the root logger's handlers with one handler on stderr. Safe to call repeatedly."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_telnyx_archiver", False):
            root.removeHandler(old)
    handler: logging.Handler
    if fmt == "json":
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(json_formatter())
    elif console is not None and console.is_terminal:
        from rich.logging import RichHandler

        # Shares the progress bar's console, so log lines print above the live bar.
        handler = RichHandler(console=console, show_path=False, rich_tracebacks=False)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    else:
        handler = logging.StreamHandler(stream or sys.stderr)
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactFilter(secrets))
    handler._telnyx_archiver = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Third-party chatter stays at WARNING unless debugging.
    quiet = logging.WARNING if level.upper() != "DEBUG" else logging.DEBUG
    for name in ("apscheduler", "aiohttp", "botocore", "boto3", "urllib3", "azure", "google"):
        logging.getLogger(name).setLevel(quiet)
    return handler


def stderr_console() -> Console:
    return Console(stderr=True)
