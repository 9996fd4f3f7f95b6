"""The command line: help everywhere, one-line errors, and every exit code.

0 all good, 1 some recordings failed, 2 usage or config error, 3 authentication or preflight.
The end-to-end cases run the real archive against the sandbox (in a thread, on its own loop).
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from pipeline import __version__
from pipeline.archive.options import RunReport
from pipeline.cli import cli
from pipeline.sandbox import SandboxConfig, ThreadedSandbox

KEY = "sandbox-key-0123456789"
WRONG_KEY = "KEYwrong-0123456789abcdef"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """The CLI installs its log handler on the root logger; take it off after each test."""
    root = logging.getLogger()
    level = root.level
    yield
    for handler in list(root.handlers):
        if getattr(handler, "_telnyx_archiver", False):
            root.removeHandler(handler)
    root.setLevel(level)


def invoke(args: list[str], env: dict[str, str | None] | None = None) -> Result:
    base: dict[str, str | None] = {
        "TELNYX_API_KEY": None,
        "TELNYX_BASE_URL": None,
        "TELNYX_ARCHIVER_CONFIG": None,
        "TELNYX_ARCHIVER_DESTINATION": None,
    }
    return CliRunner().invoke(cli, args, env={**base, **(env or {})}, catch_exceptions=False)


def one_error_line(result: Result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture
def sandbox() -> Iterator[ThreadedSandbox]:
    with ThreadedSandbox(SandboxConfig(recordings=40, seed=7, api_key=KEY)) as sb:
        yield sb


def sandbox_env(sb: ThreadedSandbox, key: str = KEY) -> dict[str, str | None]:
    return {"TELNYX_API_KEY": key, "TELNYX_BASE_URL": sb.base_url}


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    """An empty archive folder (a local destination must exist: a typo fails preflight)."""
    folder = tmp_path / "archive"
    folder.mkdir()
    return folder


# --- help, version, usage ------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [[], ["run"], ["backfill"], ["schedule"], ["verify"], ["demo"], ["sandbox"]]
)
def test_every_command_has_help(command: list[str]) -> None:
    result = invoke([*command, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.stdout


def test_version_prints_the_package_version() -> None:
    result = invoke(["--version"])
    assert result.exit_code == 0
    assert __version__ in result.stdout


def test_python_dash_m_pipeline_is_the_same_cli() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline", "--version"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0
    assert __version__ in proc.stdout


# --- exit code 2: usage and config errors --------------------------------------------------


def test_an_unknown_option_is_a_usage_error() -> None:
    assert invoke(["run", "--no-such-flag"]).exit_code == 2


def test_backfill_refuses_since_not_before_until() -> None:
    result = invoke(
        ["backfill", "--since", "2024-02-01", "--until", "2024-01-01"], {"TELNYX_API_KEY": KEY}
    )
    assert result.exit_code == 2
    assert "--since (2024-02-01T00:00:00+00:00) must be before --until" in result.stderr


def test_backfill_refuses_a_date_it_cannot_read() -> None:
    result = invoke(["backfill", "--since", "last tuesday", "--until", "2024-01-01"])
    assert result.exit_code == 2
    assert "bad date 'last tuesday'" in result.stderr


def test_a_bad_min_age_is_a_usage_error() -> None:
    result = invoke(["run", "--min-age", "2 days"], {"TELNYX_API_KEY": KEY})
    assert result.exit_code == 2
    assert "bad duration '2 days'" in result.stderr


def test_an_unsupported_destination_is_a_usage_error() -> None:
    result = invoke(["run", "--destination", "ftp://host/dir"], {"TELNYX_API_KEY": KEY})
    assert result.exit_code == 2
    assert "unsupported destination scheme 'ftp'" in result.stderr


def test_a_missing_api_key_is_a_config_error_on_one_line() -> None:
    result = invoke(["run"])
    assert result.exit_code == 2
    assert one_error_line(result) == (
        "error: telnyx.api_key is not set: export TELNYX_API_KEY or set api_key in [telnyx]"
    )


def test_an_unknown_config_key_is_a_config_error_on_one_line(tmp_path: Path) -> None:
    config = tmp_path / "archiver.toml"
    config.write_text("[schedule]\ncronn = '0 2 * * *'\n")
    result = invoke(["--config", str(config), "run"], {"TELNYX_API_KEY": KEY})
    assert result.exit_code == 2
    assert one_error_line(result) == f"error: unknown key schedule.cronn in {config}"


def test_a_bad_cron_line_in_the_config_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "archiver.toml"
    config.write_text("[schedule]\ncron = 'every night'\n")
    result = invoke(["schedule"], {"TELNYX_API_KEY": KEY, "TELNYX_ARCHIVER_CONFIG": str(config)})
    assert result.exit_code == 2
    assert one_error_line(result).startswith("error: schedule.cron: bad cron expression")


def test_verify_without_a_destination_is_a_usage_error() -> None:
    assert invoke(["verify"]).exit_code == 2


# --- exit code 1 from a report with failures (the archive faked) ---------------------------


@dataclass
class FakeStats:
    def snapshot(self) -> dict[str, int]:
        return {"GET /recordings 200": 2}


class FakeClient:
    stats = FakeStats()

    async def __aenter__(self) -> FakeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


def fake_archive(failed: int, seen: dict[str, Any]):
    async def archive(window, *, client, storage, options, progress=None, stop=None) -> RunReport:
        seen.update(window=window, storage=storage, options=options, stop=stop)
        progress.slices_planned(1)
        progress.recordings_found(3)
        for _ in range(3 - failed):
            progress.recording_done(1000)
        for _ in range(failed):
            progress.recording_failed()
        progress.slice_done()
        now = datetime.now(UTC)
        return RunReport(
            run_id="fake",
            window=window,
            slices_total=1,
            slices_done=1,
            recordings_listed=3,
            recordings_archived=3 - failed,
            recordings_deleted=3 - failed,
            recordings_failed=failed,
            bytes_uploaded=1000 * (3 - failed),
            started_at=now,
            finished_at=now,
            errors=[f"rec-{i}: download failed" for i in range(failed)],
        )

    return archive


@pytest.fixture
def faked(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    seen: dict[str, Any] = {"failed": 0}
    monkeypatch.setattr("pipeline.cli.telnyx_client", lambda settings, **kw: FakeClient())
    monkeypatch.setattr("pipeline.cli.archive_function", lambda: fake_archive(seen["failed"], seen))
    yield seen


def test_run_exits_1_when_some_recordings_failed(faked: dict[str, Any], tmp_path: Path) -> None:
    faked["failed"] = 2
    result = invoke(["run", "--destination", str(tmp_path)], {"TELNYX_API_KEY": KEY})
    assert result.exit_code == 1
    assert "FINISHED WITH FAILURES" in result.stdout
    assert "error: rec-1: download failed" in result.stdout
    assert "failed recordings stay in Telnyx" in result.stdout


def test_run_exits_0_and_prints_a_summary_when_all_went_well(
    faked: dict[str, Any], tmp_path: Path
) -> None:
    result = invoke(["run", "--destination", str(tmp_path)], {"TELNYX_API_KEY": KEY})
    assert result.exit_code == 0
    assert "run fake: OK" in result.stdout
    assert "API calls   2 (GET /recordings 200: 2)" in result.output  # from client stats


def test_run_passes_the_safety_flags_to_the_archive(faked: dict[str, Any], tmp_path: Path) -> None:
    result = invoke(
        [
            "run",
            "--dry-run",
            "--keep-source",
            "--max-delete",
            "5",
            "--min-age",
            "36h",
            "--format",
            "both",
            "--destination",
            str(tmp_path),
        ],
        {"TELNYX_API_KEY": KEY},
    )
    assert result.exit_code == 0
    options = faked["options"]
    assert (options.dry_run, options.keep_source, options.max_delete) == (True, True, 5)
    assert options.formats == ("mp3", "wav")
    assert faked["storage"].default_destination == tmp_path.as_uri()
    window = faked["window"]
    age = datetime.now(UTC) - window.until
    assert 36 * 3600 <= age.total_seconds() < 37 * 3600
    assert isinstance(faked["stop"], asyncio.Event)  # the shutdown flag reaches the archive


def test_backfill_passes_its_window_and_the_checkpoint_folder(
    faked: dict[str, Any], tmp_path: Path
) -> None:
    config = tmp_path / "archiver.toml"
    config.write_text(f"[archive]\nstate_dir = '{tmp_path / 'state'}'\n")
    result = invoke(
        [
            "--config",
            str(config),
            "backfill",
            "--since",
            "2024-01-01",
            "--until",
            "2024-02-01T12:00",
        ],
        {"TELNYX_API_KEY": KEY},
    )
    assert result.exit_code == 0
    assert faked["window"].since == datetime(2024, 1, 1, tzinfo=UTC)
    assert faked["window"].until == datetime(2024, 2, 1, 12, tzinfo=UTC)
    assert faked["options"].state_dir == str(tmp_path / "state")


def test_json_logs_are_one_object_per_line_and_end_with_the_summary(
    faked: dict[str, Any], tmp_path: Path
) -> None:
    faked["failed"] = 1
    result = invoke(
        ["--log-format", "json", "run", "--destination", str(tmp_path)], {"TELNYX_API_KEY": KEY}
    )
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert records, result.stderr
    assert all({"timestamp", "level", "logger", "message"} <= r.keys() for r in records)
    summary = next(r for r in records if r["message"].startswith("run finished"))
    assert summary["recordings_failed"] == 1
    assert summary["recordings_archived"] == 2
    assert summary["api_calls"] == 2
    assert any("slice 1/1 done" in r["message"] for r in records)  # non-TTY progress lines


def test_metrics_are_written_after_a_run_when_configured(
    faked: dict[str, Any], tmp_path: Path
) -> None:
    prom = tmp_path / "metrics" / "archiver.prom"
    config = tmp_path / "archiver.toml"
    config.write_text(f"[metrics]\ntextfile = '{prom}'\n")
    result = invoke(
        ["--config", str(config), "run", "--destination", str(tmp_path)], {"TELNYX_API_KEY": KEY}
    )
    assert result.exit_code == 0
    assert "telnyx_archiver_recordings_archived_total 3.0" in prom.read_text()


def test_an_unexpected_error_is_one_line_and_exit_1_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    async def broken(window, **kwargs: Any) -> RunReport:
        raise RuntimeError(f"the disk is on fire near {KEY}")

    monkeypatch.setattr("pipeline.cli.telnyx_client", lambda settings, **kw: FakeClient())
    monkeypatch.setattr("pipeline.cli.archive_function", lambda: broken)
    result = invoke(["run", "--destination", str(tmp_path)], {"TELNYX_API_KEY": KEY})
    assert result.exit_code == 1
    assert one_error_line(result) == "error: RuntimeError: the disk is on fire near ***"


def test_debug_level_adds_the_traceback(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async def broken(window, **kwargs: Any) -> RunReport:
        raise RuntimeError("boom")

    monkeypatch.setattr("pipeline.cli.telnyx_client", lambda settings, **kw: FakeClient())
    monkeypatch.setattr("pipeline.cli.archive_function", lambda: broken)
    result = invoke(
        ["--log-level", "debug", "run", "--destination", str(tmp_path)], {"TELNYX_API_KEY": KEY}
    )
    assert result.exit_code == 1
    assert "Traceback" in result.stderr


# --- end to end against the sandbox: 0, 1, 3 -----------------------------------------------


def test_run_archives_the_sandbox_and_verify_finds_the_archive_consistent(
    sandbox: ThreadedSandbox, dest: Path
) -> None:
    before = len(sandbox.state.recordings)
    result = invoke(["run", "--destination", str(dest)], sandbox_env(sandbox))
    assert result.exit_code == 0, result.output + result.stderr
    assert "OK" in result.stdout
    assert len(sandbox.state.recordings) < before  # archived recordings were deleted

    checked = invoke(["verify", "--destination", str(dest)])
    assert checked.exit_code == 0, checked.output + checked.stderr
    assert f"rows            {before - len(sandbox.state.recordings)}" in checked.stdout


def test_verify_exits_1_when_an_archived_file_was_tampered_with(
    sandbox: ThreadedSandbox, dest: Path
) -> None:
    assert invoke(["run", "--destination", str(dest)], sandbox_env(sandbox)).exit_code == 0
    victim = next(p for p in dest.rglob("*.mp3"))
    victim.write_bytes(b"not the audio")
    result = invoke(["verify", "--destination", str(dest)])
    assert result.exit_code == 1
    assert "PROBLEMS FOUND" in result.stdout
    assert "bad audio       1" in result.stdout


def test_dry_run_writes_nothing_and_deletes_nothing(sandbox: ThreadedSandbox, dest: Path) -> None:
    before = len(sandbox.state.recordings)
    result = invoke(["run", "--dry-run", "--destination", str(dest)], sandbox_env(sandbox))
    assert result.exit_code == 0, result.output + result.stderr
    assert len(sandbox.state.recordings) == before
    assert not list(dest.rglob("*.mp3"))


def test_run_exits_1_when_downloads_fail_and_keeps_those_recordings(
    sandbox: ThreadedSandbox, tmp_path: Path, dest: Path
) -> None:
    sandbox.config.fault_truncate = 1.0  # every audio download is cut short
    config = tmp_path / "archiver.toml"
    config.write_text("[telnyx]\nmax_attempts = 2\n")
    before = len(sandbox.state.recordings)
    result = invoke(
        ["--config", str(config), "run", "--destination", str(dest)],
        sandbox_env(sandbox),
    )
    assert result.exit_code == 1, result.output + result.stderr
    assert len(sandbox.state.recordings) == before  # nothing deleted that was not archived


def test_a_wrong_api_key_exits_3_without_showing_the_key(
    sandbox: ThreadedSandbox, dest: Path
) -> None:
    result = invoke(["run", "--destination", str(dest)], sandbox_env(sandbox, WRONG_KEY))
    assert result.exit_code == 3
    line = one_error_line(result)
    assert "Telnyx rejected the API key" in line
    assert WRONG_KEY not in result.output + result.stderr


def test_an_unwritable_destination_fails_preflight_with_exit_3(
    sandbox: ThreadedSandbox,
) -> None:
    before = len(sandbox.state.recordings)
    result = invoke(["run", "--destination", "file:///proc/forbidden"], sandbox_env(sandbox))
    assert result.exit_code == 3, result.output + result.stderr
    assert one_error_line(result).startswith("error: destination preflight failed")
    assert len(sandbox.state.recordings) == before


def test_schedule_refuses_to_start_with_an_unwritable_destination() -> None:
    result = invoke(
        ["schedule", "--destination", "file:///proc/forbidden"], {"TELNYX_API_KEY": KEY}
    )
    assert result.exit_code == 3
    assert one_error_line(result).startswith("error: destination preflight failed")


def test_demo_archives_the_sandbox_and_prints_a_working_duckdb_query(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    monkeypatch.chdir(tmp_path)
    result = invoke(["demo", "--recordings", "30", "--dir", "archive-demo"])
    assert result.exit_code == 0, result.output + result.stderr
    assert "OK" in result.stdout
    command = next(line for line in result.output.splitlines() if "import duckdb" in line)
    shown = subprocess.run(command, shell=True, cwd=tmp_path, capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr
    assert "call_date" in shown.stdout and "recordings" in shown.stdout
    counts = [
        int(cell)
        for line in shown.stdout.splitlines()
        if line.startswith("│ 20")
        for cell in [line.split("│")[2].strip()]
    ]
    assert sum(counts) == 30


def test_sigterm_during_a_run_stops_it_after_the_slice_and_exits_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os
    import signal

    async def archive(window, *, client, storage, options, progress=None, stop=None) -> RunReport:
        os.kill(os.getpid(), signal.SIGTERM)  # as Kubernetes does when it evicts the pod
        await asyncio.wait_for(stop.wait(), 10)  # the archive finishes its slice, then returns
        return RunReport(run_id="stopped", window=window, slices_total=3, slices_done=1)

    monkeypatch.setattr("pipeline.cli.telnyx_client", lambda settings, **kw: FakeClient())
    monkeypatch.setattr("pipeline.cli.archive_function", lambda: archive)
    result = invoke(["run", "--destination", str(tmp_path)], {"TELNYX_API_KEY": KEY})
    assert result.exit_code == 1
    assert "stopped on request after 1 of 3 slices" in result.stderr


def test_schedule_runs_the_job_and_exits_0_on_sigterm(sandbox: ThreadedSandbox, dest: Path) -> None:
    import os
    import queue
    import signal

    before = len(sandbox.state.recordings)
    env = {**os.environ, "TELNYX_API_KEY": KEY, "TELNYX_BASE_URL": sandbox.base_url}
    env.pop("TELNYX_ARCHIVER_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--log-format", "json", "schedule", "--now"]
        + ["--destination", str(dest)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True).start()
    records = []
    try:
        while not any(r["message"].startswith("run finished") for r in records):
            records.append(json.loads(lines.get(timeout=60)))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    while not lines.empty():
        records.append(json.loads(lines.get()))
    messages = [r["message"] for r in records]
    assert any(m.startswith("scheduler started: cron[") for m in messages)
    assert "scheduler stopped" in messages
    summary = next(r for r in records if r["message"].startswith("run finished"))
    assert summary["recordings_archived"] == before - len(sandbox.state.recordings) > 0


def test_backfill_checkpoints_its_slices_and_a_rerun_skips_them(
    sandbox: ThreadedSandbox, dest: Path, tmp_path: Path
) -> None:
    state = tmp_path / "state"
    config = tmp_path / "archiver.toml"
    config.write_text(f"[archive]\nstate_dir = '{state}'\n")
    today = datetime.now(UTC).date()
    window = ["--since", str(today - timedelta(days=10))]
    window += ["--until", str(today - timedelta(days=1))]
    args = ["--config", str(config), "--log-format", "json", "backfill", *window]
    args += ["--destination", str(dest)]

    def summary(result: Result) -> dict[str, Any]:
        assert result.exit_code == 0, result.stderr
        records = [json.loads(line) for line in result.stderr.splitlines()]
        return next(r for r in records if r["message"] == "run finished")

    before = len(sandbox.state.recordings)
    first = summary(invoke(args, sandbox_env(sandbox)))
    assert first["recordings_archived"] == before > 0
    assert list(state.glob("backfill-*.json"))
    second = summary(invoke(args, sandbox_env(sandbox)))
    assert first["api_calls_by_endpoint"]["GET /recordings 200"] >= 1
    assert second["api_calls_by_endpoint"] == {}  # every slice was done: not even listed again
