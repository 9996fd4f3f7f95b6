"""Prometheus metrics from run reports: a textfile for node-exporter, and/or a Pushgateway.

One `RunMetrics` per process, with its own registry (never the global one): counters add up
over the runs of a long-lived `schedule` process; a one-shot `run` writes that run's figures.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import pushadd_to_gateway, write_to_textfile
from prometheus_client.parser import text_string_to_metric_families

from pipeline.archive.options import RunReport
from pipeline.config import MetricsSettings, one_line

log = logging.getLogger(__name__)

PREFIX = "telnyx_archiver"
_CALL = re.compile(r"^(?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\S+)$")


class RunMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.archived = Counter(
            f"{PREFIX}_recordings_archived", "Recordings stored, verified and recorded.", registry=r
        )
        self.deleted = Counter(
            f"{PREFIX}_recordings_deleted",
            "Recordings deleted from Telnyx after archiving.",
            registry=r,
        )
        self.failed = Counter(
            f"{PREFIX}_recordings_failed",
            "Recordings left in Telnyx because of an error.",
            registry=r,
        )
        self.skipped = Counter(
            f"{PREFIX}_recordings_skipped",
            "Recordings left in Telnyx on purpose (no destination, max-delete).",
            registry=r,
        )
        self.deferred = Counter(
            f"{PREFIX}_recordings_deferred",
            "Recordings left for a later run (transcription in progress).",
            registry=r,
        )
        self.transcriptions = Counter(
            f"{PREFIX}_transcriptions_archived", "Transcriptions archived.", registry=r
        )
        self.bytes = Counter(f"{PREFIX}_bytes", "Audio bytes uploaded.", registry=r)
        self.api_calls = Counter(
            f"{PREFIX}_api_calls",
            "Telnyx API calls by endpoint and HTTP status.",
            ["endpoint", "status"],
            registry=r,
        )
        self.retries = Counter(
            f"{PREFIX}_api_retries",
            "Telnyx API calls retried, by what went wrong (HTTP status, ERR, MALFORMED).",
            ["reason"],
            registry=r,
        )
        self.runs = Counter(f"{PREFIX}_runs", "Runs finished, by outcome.", ["outcome"], registry=r)
        self.duration = Gauge(
            f"{PREFIX}_run_duration_seconds", "Duration of the last run.", registry=r
        )
        self.last_run = Gauge(
            f"{PREFIX}_last_run_timestamp_seconds", "When the last run finished.", registry=r
        )
        self.last_success = Gauge(
            f"{PREFIX}_last_success_timestamp_seconds",
            "When the last run without failures finished.",
            registry=r,
        )

    def observe(self, report: RunReport) -> None:
        self.archived.inc(report.recordings_archived)
        self.deleted.inc(report.recordings_deleted)
        self.failed.inc(report.recordings_failed)
        self.skipped.inc(report.recordings_skipped)
        self.deferred.inc(report.recordings_deferred)
        self.transcriptions.inc(report.transcriptions_archived)
        self.bytes.inc(report.bytes_uploaded)
        for key, n in report.api_calls.items():
            m = _CALL.match(key)
            if m:
                endpoint = f"{m['method']} {_template(m['path'])}"
                self.api_calls.labels(endpoint=endpoint, status=m["status"]).inc(n)
            elif key.startswith("retry "):
                self.retries.labels(reason=key.removeprefix("retry ").strip()).inc(n)
        self.runs.labels(outcome="ok" if report.ok else "failed").inc()
        if report.started_at and report.finished_at:
            self.duration.set((report.finished_at - report.started_at).total_seconds())
        finished = report.finished_at.timestamp() if report.finished_at else time.time()
        self.last_run.set(finished)
        if report.ok:
            self.last_success.set(finished)

    def publish(self, settings: MetricsSettings) -> None:
        """Write the textfile and/or push. Failures are logged, never raised: metrics are optional."""
        if settings.textfile:
            try:
                self._keep_last_success(Path(settings.textfile))
                Path(settings.textfile).parent.mkdir(parents=True, exist_ok=True)
                write_to_textfile(settings.textfile, self.registry)
            except Exception as exc:
                log.warning("could not write metrics to %s: %s", settings.textfile, exc)
        if settings.pushgateway:
            try:
                # pushadd replaces only the metrics sent, so an old last_success survives a failed run.
                pushadd_to_gateway(
                    settings.pushgateway, job=settings.job, registry=self._push_registry()
                )
            except Exception as exc:
                log.warning("could not push metrics to the Pushgateway: %s", one_line(exc)[:200])

    def _keep_last_success(self, path: Path) -> None:
        """A one-shot run that failed must not erase the previous success time from the textfile."""
        if self._has_success() or not path.exists():
            return
        try:
            for family in text_string_to_metric_families(path.read_text()):
                if family.name == f"{PREFIX}_last_success_timestamp_seconds":
                    for sample in family.samples:
                        self.last_success.set(sample.value)
        except Exception:  # an unreadable old file is simply replaced
            return

    def _has_success(self) -> bool:
        return bool(self.registry.get_sample_value(f"{PREFIX}_last_success_timestamp_seconds"))

    def _push_registry(self) -> CollectorRegistry:
        if self._has_success():
            return self.registry
        # Without a success yet, leave the gateway's last_success alone.
        registry = CollectorRegistry()
        for collector in list(self.registry._collector_to_names):  # type: ignore[attr-defined]
            if collector is not self.last_success:
                registry.register(collector)
        return registry


def _template(path: str) -> str:
    """/recordings/abc-123 -> /recordings/{id}: keep the label's cardinality bounded."""
    parts = path.split("?")[0].split("/")
    known = {
        "recordings",
        "recording_transcriptions",
        "custom_storage_credentials",
        "actions",
        "delete",
        "v2",
    }
    return "/".join(p if (not p or p in known) else "{id}" for p in parts)
