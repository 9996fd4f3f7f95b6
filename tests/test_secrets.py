"""Secret hygiene: recognisable fake secrets go through the real CLI on success and failure
paths, at debug level, and none of them shows up anywhere the tool writes.

Secrets: the Telnyx API key, an AWS secret key (a stored s3 credential and the environment),
an Azure account key (wrong for Azurite, so every Azure upload fails), and a GCS service-account
private key (parsed, and refused, when no emulator endpoint is set). Runs: a debug-level run
(s3 and GCS succeed, Azure fails), a run where the service-account JSON is parsed and refused,
a 401 with a traceback, a destination preflight failure with a traceback, `verify`, and JSON
logs. Scanned: stdout and stderr of every command, the metrics textfile, every file under the
local destination and the state folder, and every object in every bucket of the emulators.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.chaos import cli_command
from pipeline.sandbox import SandboxConfig, ThreadedSandbox
from tests.fixtures.emulators import (
    AzuriteEndpoint,
    create_bucket,
    gcs_admin_client,
    s3_admin_client,
    unique_bucket,
)

API_KEY = "TNXKEY-fake-secret-a1b2c3d4e5f6"
AWS_SECRET = "AWSSECRET-fake-secret-9z8y7x6w5v"
AZURE_KEY = base64.b64encode(b"AZUREKEY-fake-secret-0000000000000000").decode()
GCS_MARKER = "GCSPRIVATEKEY-fake-secret-q1w2e3r4"
GCS_JSON = json.dumps(
    {
        "type": "service_account",
        "project_id": "fake-project",
        "private_key_id": "0123abcd",
        "private_key": f"-----BEGIN PRIVATE KEY-----\n{GCS_MARKER}\n-----END PRIVATE KEY-----\n",
        "client_email": "archiver@fake-project.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "token_uri": "https://oauth2.googleapis.com/token",
    }
)
SECRETS = {
    "api key": API_KEY,
    "aws secret": AWS_SECRET,
    "azure key": AZURE_KEY,
    "gcs key": GCS_MARKER,
}


class World:
    def __init__(
        self, tmp: Path, s3_url: str, gcs_url: str, azure: AzuriteEndpoint, sandbox: ThreadedSandbox
    ) -> None:
        self.tmp, self.s3_url, self.gcs_url, self.azure, self.sandbox = (
            tmp,
            s3_url,
            gcs_url,
            azure,
            sandbox,
        )
        self.dest = tmp / "archive"
        self.state = tmp / "state"
        self.metrics = tmp / "metrics.prom"
        self.config = tmp / "archiver.toml"
        self.config.write_text(
            "[telnyx]\nrequests_per_second = 500.0\nmax_attempts = 2\n"
            f'[archive]\nstate_dir = "{self.state}"\n'
            f'[metrics]\ntextfile = "{self.metrics}"\n'
        )
        self.outputs: dict[str, str] = {}

    def env(self, *, key: str = API_KEY, gcs_emulator: bool = True) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TELNYX_", "AWS_", "AZURE_", "STORAGE_EMULATOR", "GOOGLE_"))
        }
        env.update(
            TELNYX_API_KEY=key,
            TELNYX_BASE_URL=self.sandbox.base_url,
            AWS_ENDPOINT_URL=self.s3_url,
            AWS_ACCESS_KEY_ID="AKIAFAKE",
            AWS_SECRET_ACCESS_KEY=AWS_SECRET,
            AWS_DEFAULT_REGION="us-east-1",
            AZURE_STORAGE_BLOB_ENDPOINT=self.azure.url,
        )
        if gcs_emulator:
            env["STORAGE_EMULATOR_HOST"] = self.gcs_url
        return env

    def cli(self, name: str, args: list[str], **env: object) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [*cli_command(), "--config", str(self.config), *args],
            env=self.env(**env),  # type: ignore[arg-type]
            capture_output=True,
            text=True,
            timeout=240,
            cwd=self.tmp,
        )
        self.outputs[f"{name} stdout"] = proc.stdout
        self.outputs[f"{name} stderr"] = proc.stderr
        return proc


def credentials(s3_bucket: str, gcs_bucket: str, azure: AzuriteEndpoint) -> dict[str, dict]:
    return {
        "#0": {
            "backend": "s3",
            "configuration": {
                "bucket": s3_bucket,
                "region": "us-east-1",
                "aws_access_key_id": "AKIAFAKE",
                "aws_secret_access_key": AWS_SECRET,
            },
        },
        "#1": {
            "backend": "azure",
            "configuration": {
                "bucket": "never-created",
                "account_name": azure.account_name,
                "account_key": AZURE_KEY,
            },
        },
        "#2": {"backend": "gcs", "configuration": {"bucket": gcs_bucket, "credentials": GCS_JSON}},
    }


@pytest.fixture
def world(
    tmp_path: Path, s3_endpoint: str, gcs_endpoint: str, azure_endpoint: AzuriteEndpoint
) -> Iterator[World]:
    s3_bucket, gcs_bucket = unique_bucket("sec"), unique_bucket("sec")
    create_bucket("s3", s3_bucket, s3_url=s3_endpoint)
    create_bucket("gcs", gcs_bucket, gcs_url=gcs_endpoint)
    config = SandboxConfig(
        recordings=24,
        seed=12,
        api_key=API_KEY,
        audio_bytes=2048,
        connections=4,
        credentials=credentials(s3_bucket, gcs_bucket, azure_endpoint),
    )
    with ThreadedSandbox(config) as sandbox:
        w = World(tmp_path, s3_endpoint, gcs_endpoint, azure_endpoint, sandbox)
        w.dest.mkdir()
        w.s3_bucket, w.gcs_bucket = s3_bucket, gcs_bucket  # type: ignore[attr-defined]
        yield w


def written_artifacts(w: World) -> dict[str, bytes]:
    """Everything the tool left behind: files, objects in every bucket, and its output."""
    found = {name: text.encode() for name, text in w.outputs.items()}
    for root in (w.dest, w.state, w.metrics):
        paths = [root] if root.is_file() else (list(root.rglob("*")) if root.exists() else [])
        found.update({str(p): p.read_bytes() for p in paths if p.is_file()})
    s3 = s3_admin_client(w.s3_url)
    for bucket in s3.list_buckets()["Buckets"]:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for obj in page.get("Contents", ()):
                body = s3.get_object(Bucket=bucket["Name"], Key=obj["Key"])["Body"].read()
                found[f"s3://{bucket['Name']}/{obj['Key']}"] = body
    gcs = gcs_admin_client(w.gcs_url)
    for blob in gcs.list_blobs(w.gcs_bucket):  # type: ignore[attr-defined]
        found[f"gs://{w.gcs_bucket}/{blob.name}"] = blob.download_as_bytes()  # type: ignore[attr-defined]
    return found


def test_no_secret_appears_in_output_logs_parquet_manifests_or_objects(world: World) -> None:
    w = world
    dest = ["--destination", w.dest.as_uri()]
    conns = w.sandbox.state.connection_ids

    ok = w.cli("debug run", ["--log-level", "debug", "run", *dest, "--keep-source"])
    assert ok.returncode == 1, ok.stderr[-2000:]  # the Azure connection fails: wrong key
    assert f"connection {conns[1]}" in ok.stdout + ok.stderr
    refused = w.cli(
        "gcs key parsed",
        ["--log-level", "debug", "run", *dest, "--keep-source"],
        gcs_emulator=False,
    )
    assert "not a valid service-account JSON" in refused.stdout + refused.stderr
    json_run = w.cli("json run", ["--log-format", "json", "--log-level", "debug", "run", *dest])
    assert json_run.returncode == 1
    denied = w.cli("401", ["--log-level", "debug", "run", *dest], key=API_KEY[::-1])
    assert denied.returncode == 3 and "Traceback" in denied.stderr
    missing = ["--destination", (w.tmp / "no-such-folder").as_uri()]
    preflight = w.cli("preflight", ["-v", "run", *missing])
    assert preflight.returncode == 3 and "Traceback" in preflight.stderr
    for url in (w.dest.as_uri(), f"s3://{w.s3_bucket}/telnyx-archive"):  # type: ignore[attr-defined]
        w.cli(f"verify {url}", ["--log-level", "debug", "verify", "--destination", url])

    artifacts = written_artifacts(w)
    assert any(".parquet" in name for name in artifacts), "Parquet was written and scanned"
    assert any("_runs/" in name for name in artifacts), "manifests were written and scanned"
    assert any(name.startswith("s3://") for name in artifacts)
    assert any(name.startswith("gs://") for name in artifacts)
    leaks = [
        f"{what} in {name}"
        for name, data in artifacts.items()
        for what, secret in SECRETS.items()
        if secret.encode() in data
    ]
    scans = len(artifacts) * len(SECRETS)
    print(f"secret scans: {scans} ({len(artifacts)} artifacts x {len(SECRETS)} secrets)")
    assert leaks == []
    assert scans >= 100

    (w.dest / "planted.txt").write_text(f"the scan must catch this: {AWS_SECRET}")
    planted = written_artifacts(w)
    assert AWS_SECRET.encode() in planted[str(w.dest / "planted.txt")], "the scanner works"
