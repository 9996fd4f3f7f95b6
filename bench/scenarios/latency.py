"""Scenario 2, latency-bound: 100 ms per API call and before every audio body, no rate limit.

The archiver (moto S3 and a local folder) against the sequential script a user would write
with the official SDK (bench/baseline_sdk.py), on the same sandbox settings and the same moto.
The baseline runs on fewer recordings; its recordings/s is what scales linearly to N.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import procs

from scenarios import figure

SCENARIO = "2 latency-bound"
BUCKET = "bench-latency"
LATENCY = 0.1
AUDIO_BYTES = 256 * 1024
BASELINE_PAGE_SIZE = 20  # the API's default page size


def sandbox_settings(recordings: int) -> dict[str, Any]:
    return {
        "recordings": recordings,
        "audio_bytes": AUDIO_BYTES,
        "latency": LATENCY,
        "audio_latency": LATENCY,
    }


def spec(base_url: str, destination: str) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "api_key": procs.API_KEY,
        "destination": destination,
        # No rate limit to honour: the client's limiter only has to stay out of the way.
        "client": {"requests_per_second": 2000.0, "max_concurrency": 64},
        "options": {"concurrency": 64, "commit_every": 250},
        "storage": {"max_concurrency": 16},
    }


def archiver_run(
    recordings: int, destination: str, env: dict[str, str] | None, s3: procs.Moto | None = None
) -> dict[str, Any]:
    with procs.sandbox(**sandbox_settings(recordings)) as sb:
        load = procs.load_average()
        cpu = (sb.cpu_s(), s3.cpu_s() if s3 else 0.0)
        result = procs.run_archiver(spec(sb.base_url, destination), env)
        left = len(sb.state()["recordings"]["remaining"])
        result["sandbox_cpu_s"] = sb.cpu_s() - cpu[0]
        result["moto_cpu_s"] = s3.cpu_s() - cpu[1] if s3 else 0.0
    if result["recordings_archived"] != recordings or left:
        raise RuntimeError(f"{SCENARIO}: incomplete archiver run: {result}")
    return {
        **result,
        "recordings": recordings,
        "recordings_per_s": recordings / result["wall_s"],
        "load_average_1m_before": load,
    }


def baseline_run(s3: procs.Moto, recordings: int, index: int) -> dict[str, Any]:
    with procs.sandbox(**sandbox_settings(recordings)) as sb:
        load = procs.load_average()
        done = subprocess.run(
            [
                procs.PYTHON,
                str(procs.REPO / "bench" / "baseline_sdk.py"),
                "--base-url",
                sb.base_url,
                "--api-key",
                procs.API_KEY,
                "--bucket",
                BUCKET,
                "--prefix",
                f"baseline-{index}",
                "--page-size",
                str(BASELINE_PAGE_SIZE),
            ],
            env=procs.s3_env(s3.url),
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            raise RuntimeError(f"baseline failed:\n{done.stderr[-3000:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        left = len(sb.state()["recordings"]["remaining"])
    return {
        **result,
        "recordings": recordings,
        "left_in_telnyx": left,
        "load_average_1m_before": load,
    }


def run(runs: int = 3, recordings: int = 1500, baseline_recordings: int = 100) -> dict[str, Any]:
    s3_runs, local_runs, base_runs = [], [], []
    with procs.moto(BUCKET) as s3:
        for i in range(runs):
            s3_runs.append(
                archiver_run(recordings, f"s3://{BUCKET}/run-{i}", procs.s3_env(s3.url), s3)
            )
            base_runs.append(baseline_run(s3, baseline_recordings, i))
    for _ in range(runs):
        folder = Path(tempfile.mkdtemp(prefix="bench-latency-"))
        try:
            local_runs.append(archiver_run(recordings, folder.as_uri(), None))
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def col(rows: list[dict[str, Any]], key: str) -> list[float]:
        return [float(r[key]) for r in rows]

    ratios = [
        a["recordings_per_s"] / b["recordings_per_s"]
        for a, b in zip(s3_runs, base_runs, strict=True)
    ]
    local_ratios = [
        a["recordings_per_s"] / b["recordings_per_s"]
        for a, b in zip(local_runs, base_runs, strict=True)
    ]
    projected = [recordings / b["recordings_per_s"] for b in base_runs]
    left_share = [100.0 * b["left_in_telnyx"] / b["recordings"] for b in base_runs]
    n, nb = recordings, baseline_recordings
    figures = [
        figure(SCENARIO, f"archiver -> moto S3, N={n}: wall time", col(s3_runs, "wall_s"), "s"),
        figure(
            SCENARIO, "archiver -> moto S3: recordings/s", col(s3_runs, "recordings_per_s"), "/s"
        ),
        figure(
            SCENARIO, f"archiver -> local folder, N={n}: wall time", col(local_runs, "wall_s"), "s"
        ),
        figure(
            SCENARIO,
            "archiver -> local folder: recordings/s",
            col(local_runs, "recordings_per_s"),
            "/s",
        ),
        figure(
            SCENARIO,
            "archiver -> moto S3: moto_server CPU / wall (1 = one core busy)",
            [r["moto_cpu_s"] / r["wall_s"] for r in s3_runs],
            "",
        ),
        figure(
            SCENARIO,
            "archiver -> moto S3: CPU s per recording, archiver + moto + sandbox",
            [
                1000 * (r["cpu_s"] + r["moto_cpu_s"] + r["sandbox_cpu_s"]) / r["recordings"]
                for r in s3_runs
            ],
            "ms",
            digits=1,
        ),
        figure(
            SCENARIO,
            f"SDK baseline -> moto S3, N={nb}, page size {BASELINE_PAGE_SIZE}: recordings/s",
            col(base_runs, "recordings_per_s"),
            "/s",
        ),
        figure(
            SCENARIO,
            f"SDK baseline: wall time scaled linearly to N={n}",
            projected,
            "s",
        ),
        figure(
            SCENARIO,
            "speed-up, archiver (S3) / SDK baseline",
            ratios,
            "x",
            target=">= 30",
            ok=lambda v: v >= 30,
            digits=1,
        ),
        figure(SCENARIO, "speed-up, archiver (local) / SDK baseline", local_ratios, "x", digits=1),
        figure(
            SCENARIO,
            f"SDK baseline: recordings left behind by its single pass (of {nb})",
            col(base_runs, "left_in_telnyx"),
            "",
            digits=0,
        ),
        figure(SCENARIO, "SDK baseline: share left behind", left_share, "%", digits=0),
    ]
    return {
        "figures": figures,
        "runs": {"archiver_s3": s3_runs, "archiver_local": local_runs, "baseline_sdk": base_runs},
    }
