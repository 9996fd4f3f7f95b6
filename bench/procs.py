"""The processes of a benchmark: the sandbox, moto_server and the archiver, each on its own.

Each server runs in a process of its own so it does not share the archiver's event loop (or
GIL), and the archiver's peak RSS is measured alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.fixtures.servers import free_port, stop, wait_http  # noqa: E402

PYTHON = str(REPO / ".venv" / "bin" / "python") if (REPO / ".venv").exists() else sys.executable
MOTO = str(REPO / ".venv" / "bin" / "moto_server")
API_KEY = "sandbox-key"
# moto accepts any keys; these only keep boto3 from looking for real ones.
FAKE_AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
LOGS = Path(tempfile.gettempdir()) / "telnyx-archiver-bench"


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


@dataclass
class Sandbox:
    url: str
    proc: subprocess.Popen

    def cpu_s(self) -> float:
        return cpu_seconds(self.proc.pid)

    @property
    def base_url(self) -> str:
        return self.url + "/v2"

    def state(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/_sandbox/state", timeout=60) as r:
            return json.loads(r.read())


@contextmanager
def sandbox(**settings: Any) -> Iterator[Sandbox]:
    """`python -m pipeline.sandbox` with the given SandboxConfig settings (as CLI flags)."""
    port = free_port()
    cmd = [PYTHON, "-m", "pipeline.sandbox", "--port", str(port)]
    for name, value in settings.items():
        if value is not None:
            cmd += [f"--{name.replace('_', '-')}", str(value)]
    LOGS.mkdir(exist_ok=True)
    with open(LOGS / f"sandbox-{port}.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/", proc, timeout=120)
            yield Sandbox(f"http://127.0.0.1:{port}", proc)
        finally:
            stop(proc)


@dataclass
class Moto:
    url: str
    proc: subprocess.Popen

    def cpu_s(self) -> float:
        return cpu_seconds(self.proc.pid)


@contextmanager
def moto(bucket: str) -> Iterator[Moto]:
    """moto_server with one bucket."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    LOGS.mkdir(exist_ok=True)
    with open(LOGS / f"moto-{port}.log", "wb") as log:
        proc = subprocess.Popen(
            [MOTO, "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            wait_http(f"{url}/moto-api/", proc)
            import boto3

            boto3.client(
                "s3",
                endpoint_url=url,
                region_name="us-east-1",
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            ).create_bucket(Bucket=bucket)
            yield Moto(url, proc)
        finally:
            stop(proc)


def s3_env(endpoint: str) -> dict[str, str]:
    return {**os.environ, **FAKE_AWS, "AWS_ENDPOINT_URL": endpoint}


def run_archiver(spec: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
    """One archiver run in a subprocess; its JSON result, plus the process's wall time."""
    started = time.perf_counter()
    cmd = [PYTHON, str(REPO / "bench" / "archive_worker.py"), json.dumps(spec)]
    if os.environ.get("BENCH_PYSPY"):  # profile the archiver: py-spy's collapsed stacks
        cmd = [
            str(REPO / ".venv" / "bin" / "py-spy"),
            "record",
            "-f",
            "raw",
            "-r",
            "50",
            "-o",
            os.environ["BENCH_PYSPY"],
            "--",
            *cmd,
        ]
    done = subprocess.run(
        cmd,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise RuntimeError(f"archiver run failed ({done.returncode}):\n{done.stderr[-3000:]}")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result = json.loads(lines[-1])
    result["process_wall_s"] = time.perf_counter() - started
    return result
