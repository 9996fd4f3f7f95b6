"""`telnyx-archiver sandbox` / `python -m pipeline.sandbox`: flags map to SandboxConfig; it serves."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.sandbox import SandboxConfig
from pipeline.sandbox import command as command_module
from pipeline.sandbox.command import sandbox_command

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def captured(monkeypatch) -> list[tuple[SandboxConfig, str, int]]:
    calls: list[tuple[SandboxConfig, str, int]] = []

    async def fake_serve(config: SandboxConfig, host: str, port: int) -> None:
        calls.append((config, host, port))

    monkeypatch.setattr(command_module, "serve", fake_serve)
    return calls


def test_every_flag_lands_in_the_config(captured, tmp_path) -> None:
    creds = tmp_path / "creds.json"
    creds.write_text(json.dumps({"#1": {"backend": "gcs", "configuration": {"bucket": "b"}}}))
    args = (
        "--host 127.0.0.1 --port 9999 --recordings 10000 --seed 5 --api-key k --connections 6 "
        "--days 3 --anchor 2026-02-01 --audio-bytes 1024 --link-ttl 1 --transcription-pagination page "
        "--transcription-ratio 0.5 --in-progress-ratio 0.2 --rate-limit 5 --rate-burst 2 "
        "--retry-after-header --rate-reset-fractional --latency 0.1 --audio-latency 0.2 "
        "--fault-seed 9 --fault-5xx 0.1 --fault-reset 0.05 --fault-truncate 0.1 --fault-expire 0.1 "
        "--fault-partial-delete 0.3"
    ).split() + ["--credentials", str(creds)]
    result = CliRunner().invoke(sandbox_command, args)
    assert result.exit_code == 0, result.output
    ((config, host, port),) = captured
    assert (host, port) == ("127.0.0.1", 9999)
    assert config == SandboxConfig(
        recordings=10000,
        seed=5,
        api_key="k",
        connections=6,
        days=3,
        anchor=datetime(2026, 2, 1, tzinfo=UTC),
        audio_bytes=1024,
        link_ttl=1.0,
        transcription_pagination="page",
        transcription_ratio=0.5,
        in_progress_ratio=0.2,
        credentials={"#1": {"backend": "gcs", "configuration": {"bucket": "b"}}},
        rate_limit=5.0,
        rate_burst=2,
        retry_after_header=True,
        rate_reset_fractional=True,
        latency=0.1,
        audio_latency=0.2,
        fault_seed=9,
        fault_5xx=0.1,
        fault_reset=0.05,
        fault_truncate=0.1,
        fault_expire=0.1,
        fault_partial_delete=0.3,
    )


def test_defaults_match_the_config_defaults(captured) -> None:
    assert CliRunner().invoke(sandbox_command, []).exit_code == 0
    ((config, host, port),) = captured
    assert config == SandboxConfig() and (host, port) == ("127.0.0.1", 8020)


def test_out_of_range_shares_are_refused(captured) -> None:
    result = CliRunner().invoke(sandbox_command, ["--fault-5xx", "1.5"])
    assert result.exit_code == 2 and not captured


def test_the_module_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.sandbox", "--port", "0", "--recordings", "7"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = proc.stdout.readline()  # "Telnyx sandbox: http://127.0.0.1:PORT/v2"
        base = first.split(": ", 1)[1].strip()
        request = urllib.request.Request(
            base + "/recordings", headers={"Authorization": "Bearer sandbox-key"}
        )
        with urllib.request.urlopen(request, timeout=10) as r:
            assert json.load(r)["meta"]["total_results"] == 7
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
