"""Log output: JSON lines a machine can parse, readable text for people, no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from pipeline.logs import setup_logging


@pytest.fixture
def stderr() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    yield buffer
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_telnyx_archiver", False):
            root.removeHandler(handler)


def test_json_format_writes_one_parsable_object_per_line(stderr: io.StringIO) -> None:
    setup_logging("json", "INFO", stream=stderr)
    log = logging.getLogger("pipeline.test")
    log.info("slice done", extra={"slices_done": 3, "bytes": 1024})
    log.warning("multi\nline message")
    log.debug("not shown at INFO")

    lines = stderr.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "slice done"
    assert first["level"] == "INFO"
    assert first["logger"] == "pipeline.test"
    assert first["slices_done"] == 3
    assert first["bytes"] == 1024
    assert "timestamp" in first
    assert second["level"] == "WARNING"
    assert second["message"] == "multi\nline message"


def test_json_format_keeps_an_exception_inside_its_line(stderr: io.StringIO) -> None:
    setup_logging("json", "DEBUG", stream=stderr)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("pipeline.test").exception("it failed")
    (line,) = stderr.getvalue().splitlines()
    record = json.loads(line)
    assert "RuntimeError: boom" in record["exc_info"]


def test_text_format_names_level_and_logger(stderr: io.StringIO) -> None:
    setup_logging("text", "INFO", stream=stderr)
    logging.getLogger("pipeline.test").info("hello %s", "world")
    line = stderr.getvalue().strip()
    assert "INFO" in line
    assert "pipeline.test: hello world" in line


def test_a_known_secret_is_redacted_from_every_line(stderr: io.StringIO) -> None:
    setup_logging("json", "INFO", secrets=["KEY0123456789secret"], stream=stderr)
    logging.getLogger("pipeline.test").error("request failed with %s", "KEY0123456789secret")
    assert "KEY0123456789secret" not in stderr.getvalue()
    assert json.loads(stderr.getvalue())["message"] == "request failed with ***"


def test_setting_up_twice_leaves_one_handler(stderr: io.StringIO) -> None:
    setup_logging("text", "INFO", stream=stderr)
    setup_logging("json", "INFO", stream=stderr)
    logging.getLogger("pipeline.test").info("once")
    assert len(stderr.getvalue().splitlines()) == 1
