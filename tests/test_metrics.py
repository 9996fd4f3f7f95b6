"""Prometheus metrics built from a run report, written for node-exporter or pushed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.archive.options import RunReport, Window
from pipeline.config import MetricsSettings
from pipeline.metrics import RunMetrics

START = datetime(2026, 11, 2, 2, 0, tzinfo=UTC)


def report(*, failed: int = 0, finished: datetime | None = None) -> RunReport:
    finished = finished or START + timedelta(seconds=42)
    return RunReport(
        run_id="r1",
        window=Window(START - timedelta(days=30), START - timedelta(days=1)),
        recordings_archived=10,
        recordings_deleted=9,
        recordings_failed=failed,
        recordings_skipped=1,
        transcriptions_archived=7,
        bytes_uploaded=12345,
        started_at=finished - timedelta(seconds=42),
        finished_at=finished,
        api_calls={
            "GET /recordings 200": 3,
            "GET /recordings 429": 1,
            "POST /recordings/actions/delete 200": 1,
            "DELETE /recording_transcriptions/abc-123 200": 7,
            "retry 429": 1,
        },
    )


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_run_report_becomes_counters_and_gauges(tmp_path: Path) -> None:
    metrics = RunMetrics()
    metrics.observe(report())
    path = tmp_path / "textfile" / "telnyx_archiver.prom"
    metrics.publish(MetricsSettings(textfile=str(path)))

    got = samples(path.read_text())
    assert got[("telnyx_archiver_recordings_archived_total", ())] == 10
    assert got[("telnyx_archiver_recordings_deleted_total", ())] == 9
    assert got[("telnyx_archiver_recordings_failed_total", ())] == 0
    assert got[("telnyx_archiver_bytes_total", ())] == 12345
    calls = ("telnyx_archiver_api_calls_total",)
    assert got[(*calls, (("endpoint", "GET /recordings"), ("status", "429")))] == 1
    assert got[(*calls, (("endpoint", "GET /recordings"), ("status", "200")))] == 3
    assert (
        got[(*calls, (("endpoint", "DELETE /recording_transcriptions/{id}"), ("status", "200")))]
        == 7
    )
    assert got[("telnyx_archiver_api_retries_total", (("reason", "429"),))] == 1
    assert got[("telnyx_archiver_run_duration_seconds", ())] == 42
    finished = START + timedelta(seconds=42)
    assert got[("telnyx_archiver_last_success_timestamp_seconds", ())] == finished.timestamp()


def test_counters_add_up_over_the_runs_of_one_process(tmp_path: Path) -> None:
    metrics = RunMetrics()
    metrics.observe(report())
    metrics.observe(report(failed=2))
    path = tmp_path / "m.prom"
    metrics.publish(MetricsSettings(textfile=str(path)))
    got = samples(path.read_text())
    assert got[("telnyx_archiver_recordings_archived_total", ())] == 20
    assert got[("telnyx_archiver_recordings_failed_total", ())] == 2
    assert got[("telnyx_archiver_runs_total", (("outcome", "failed"),))] == 1
    assert got[("telnyx_archiver_runs_total", (("outcome", "ok"),))] == 1


def test_a_failed_run_keeps_the_previous_success_time_in_the_textfile(tmp_path: Path) -> None:
    path = tmp_path / "m.prom"
    good = RunMetrics()
    good.observe(report())
    good.publish(MetricsSettings(textfile=str(path)))

    bad = RunMetrics()  # a new cron run: a new process
    bad.observe(report(failed=1, finished=START + timedelta(days=1)))
    bad.publish(MetricsSettings(textfile=str(path)))

    got = samples(path.read_text())
    assert got[("telnyx_archiver_recordings_failed_total", ())] == 1
    finished = START + timedelta(seconds=42)
    assert got[("telnyx_archiver_last_success_timestamp_seconds", ())] == finished.timestamp()


class _Gateway(BaseHTTPRequestHandler):
    received: list[tuple[str, str, bytes]] = []

    def _record(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.received.append((self.command, self.path, body))
        self.send_response(200)
        self.end_headers()

    do_POST = do_PUT = _record

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    _Gateway.received = []
    server = HTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_metrics_are_pushed_to_the_pushgateway_under_the_job_name(gateway: str) -> None:
    metrics = RunMetrics()
    metrics.observe(report())
    metrics.publish(MetricsSettings(pushgateway=gateway, job="nightly"))
    ((method, path, body),) = _Gateway.received
    assert method == "POST"  # pushadd: replaces only the metrics sent
    assert path == "/metrics/job/nightly"
    assert b"telnyx_archiver_recordings_archived_total 10.0" in body
    assert b"telnyx_archiver_last_success_timestamp_seconds" in body


def test_a_failed_run_pushes_no_success_time(gateway: str) -> None:
    metrics = RunMetrics()
    metrics.observe(report(failed=3))
    metrics.publish(MetricsSettings(pushgateway=gateway))
    ((_, _, body),) = _Gateway.received
    assert b"telnyx_archiver_recordings_failed_total 3.0" in body
    assert b"last_success_timestamp_seconds" not in body


def test_an_unreachable_pushgateway_is_a_warning_not_a_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from tests.fixtures.servers import free_port

    metrics = RunMetrics()
    metrics.observe(report())
    metrics.publish(MetricsSettings(pushgateway=f"http://127.0.0.1:{free_port()}"))
    assert "could not push metrics" in caplog.text
