"""Scenario 3, memory: the archiver's peak RSS (VmHWM of its own process) on the local backend.

At N and at 10 x N recordings (target: 10 x N <= 1.3 x the peak at N), and while archiving
one 1 GiB recording (target < 150 MiB). No latency, no rate limit: memory, not speed.

The archiver runs as installed: with its runtime dependencies only. The dev venv also has
pandas, which pyarrow imports on its first array (about 37 MiB); the worker makes it
unimportable, and one extra figure shows the 1 GiB run in the dev venv, pandas loaded.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import procs

from scenarios import MiB, figure

SCENARIO = "3 memory"
AUDIO_BYTES = 16 * 1024
BIG = 1024 * MiB


def spec(base_url: str, destination: str, *, pandas: bool = False) -> dict[str, Any]:
    return {
        "without_modules": [] if pandas else ["pandas"],
        "base_url": base_url,
        "api_key": procs.API_KEY,
        "destination": destination,
        "client": {"requests_per_second": 2000.0, "max_concurrency": 32},
        "options": {"concurrency": 32},
    }


def peak_run(recordings: int, audio_bytes: int, *, pandas: bool = False) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        with procs.sandbox(recordings=recordings, audio_bytes=audio_bytes) as sb:
            load = procs.load_average()
            result = procs.run_archiver(spec(sb.base_url, folder.as_uri(), pandas=pandas))
            left = len(sb.state()["recordings"]["remaining"])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if result["recordings_archived"] != recordings or left:
        raise RuntimeError(f"{SCENARIO}: incomplete run: {result}")
    return {
        **result,
        "recordings": recordings,
        "audio_bytes": audio_bytes,
        "peak_rss_mib": result["peak_rss_bytes"] / MiB,
        "load_average_1m_before": load,
    }


def run(runs: int = 3, recordings: int = 300) -> dict[str, Any]:
    small = [peak_run(recordings, AUDIO_BYTES) for _ in range(runs)]
    large = [peak_run(10 * recordings, AUDIO_BYTES) for _ in range(runs)]
    big = [peak_run(1, BIG) for _ in range(runs)]
    big_dev = [peak_run(1, BIG, pandas=True) for _ in range(runs)]

    def col(rows: list[dict[str, Any]], key: str) -> list[float]:
        return [float(r[key]) for r in rows]

    ratio = [b["peak_rss_bytes"] / a["peak_rss_bytes"] for a, b in zip(small, large, strict=True)]
    n = recordings
    figures = [
        figure(
            SCENARIO,
            f"peak RSS, N={n} ({AUDIO_BYTES // 1024} KiB each)",
            col(small, "peak_rss_mib"),
            "MiB",
            digits=1,
        ),
        figure(SCENARIO, f"peak RSS, 10 x N={10 * n}", col(large, "peak_rss_mib"), "MiB", digits=1),
        figure(
            SCENARIO,
            "peak RSS at 10 x N / at N",
            ratio,
            "x",
            target="<= 1.3",
            ok=lambda v: v <= 1.3,
        ),
        figure(
            SCENARIO,
            "peak RSS, one 1 GiB recording",
            col(big, "peak_rss_mib"),
            "MiB",
            target="< 150",
            ok=lambda v: v < 150,
            digits=1,
        ),
        figure(SCENARIO, "one 1 GiB recording: wall time", col(big, "wall_s"), "s"),
        figure(
            SCENARIO,
            "peak RSS, one 1 GiB recording, dev venv (pandas loaded by pyarrow)",
            col(big_dev, "peak_rss_mib"),
            "MiB",
            digits=1,
        ),
    ]
    runs_out = {"n": small, "10n": large, "1gib": big, "1gib_dev_venv": big_dev}
    return {"figures": figures, "runs": runs_out}
