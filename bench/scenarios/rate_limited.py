"""Scenario 1, the physical limit: a rate-limited API, 30 ms per call, destination moto S3.

The bound is the fewest API calls the job can make, divided by the rate limit R:
list pages of recordings ceil(N/250) and of transcriptions ceil(T/250), one credential lookup
per connection, the bulk-delete chunks ceil(N/chunk), and one delete per transcription.
The figure is the archiver's wall time over that bound (target <= 1.15), with the calls it
made (its own count and the sandbox's) against that minimum.
"""

from __future__ import annotations

import math
from typing import Any

import procs

from scenarios import figure

SCENARIO = "1 rate-limited"
BUCKET = "bench-rate"
RATE = 50.0  # requests per second, the sandbox's limit and the client's setting
LATENCY = 0.03
AUDIO_BYTES = 64 * 1024
PAGE = 250
CHUNK = 100


def minimum_calls(recordings: int, transcriptions: int, connections: int) -> dict[str, int]:
    parts = {
        "list recordings pages": math.ceil(recordings / PAGE),
        "list transcriptions pages": math.ceil(transcriptions / PAGE),
        "credential lookups": connections,
        "bulk-delete chunks": math.ceil(recordings / CHUNK),
        "transcription deletes": transcriptions,
    }
    return {**parts, "total": sum(parts.values())}


def api_calls(counts: dict[str, int]) -> int:
    """Calls answered under /v2 (audio downloads are not API calls; retries are in the counts)."""
    return sum(n for k, n in counts.items() if not k.startswith("retry ") and "/_" not in k)


def spec(base_url: str, destination: str, recordings: int) -> dict[str, Any]:
    return {
        "base_url": base_url,
        "api_key": procs.API_KEY,
        "destination": destination,
        "client": {"requests_per_second": RATE, "max_concurrency": 16},
        "options": {
            "concurrency": 32,
            "slice_max_results": max(recordings, 5000),  # one slice
            "page_size": PAGE,
            "delete_chunk_size": CHUNK,
            "commit_every": 100,  # deletes start once the first 100 are durable
        },
    }


def one_run(s3: procs.Moto, recordings: int, index: int) -> dict[str, Any]:
    with procs.sandbox(
        recordings=recordings,
        audio_bytes=AUDIO_BYTES,
        latency=LATENCY,
        rate_limit=RATE,
    ) as sb:
        before = sb.state()
        transcriptions = len(before["transcriptions"]["remaining"])
        connections = len(before["connection_ids"])
        cpu = (sb.cpu_s(), s3.cpu_s())
        load = procs.load_average()
        result = procs.run_archiver(
            spec(sb.base_url, f"s3://{BUCKET}/run-{index}", recordings), procs.s3_env(s3.url)
        )
        after = sb.state()
        minimum = minimum_calls(recordings, transcriptions, connections)
        bound = minimum["total"] / RATE
        made = api_calls(result["api_calls"])
        served = api_calls(after["requests"])
        return {
            **result,
            "recordings": recordings,
            "transcriptions": transcriptions,
            "minimum_calls": minimum,
            "bound_s": bound,
            "wall_over_bound": result["wall_s"] / bound,
            "calls_made_client": made,
            "calls_served_sandbox": served,
            "calls_429": sum(n for k, n in after["requests"].items() if k.endswith(" 429")),
            "sandbox_requests": after["requests"],
            "left_in_telnyx": len(after["recordings"]["remaining"]),
            "sandbox_cpu_s": sb.cpu_s() - cpu[0],
            "moto_cpu_s": s3.cpu_s() - cpu[1],
            "load_average_1m_before": load,
        }


def run(runs: int = 3, recordings: int = 3000) -> dict[str, Any]:
    with procs.moto(BUCKET) as s3:
        details = [one_run(s3, recordings, i) for i in range(runs)]
    for d in details:
        if d["recordings_archived"] != recordings or d["left_in_telnyx"]:
            raise RuntimeError(f"{SCENARIO}: incomplete run: {d}")
    col = lambda key: [float(d[key]) for d in details]  # noqa: E731
    minimum = details[0]["minimum_calls"]["total"]
    title = f"N={recordings}, R={RATE:g}/s, {LATENCY * 1000:g} ms/call, moto S3"
    figures = [
        figure(SCENARIO, f"wall time ({title})", col("wall_s"), "s"),
        figure(SCENARIO, "bound = minimum calls / R", col("bound_s"), "s"),
        figure(
            SCENARIO,
            "wall time / bound",
            col("wall_over_bound"),
            "x",
            target="<= 1.15",
            ok=lambda v: v <= 1.15,
        ),
        figure(SCENARIO, "API calls made (client count)", col("calls_made_client"), "", digits=0),
        figure(
            SCENARIO,
            "API calls answered (sandbox count)",
            col("calls_served_sandbox"),
            "",
            digits=0,
        ),
        figure(SCENARIO, "minimum API calls", [float(minimum)] * len(details), "", digits=0),
        figure(SCENARIO, "429 answers", col("calls_429"), "", digits=0),
        figure(SCENARIO, "archiver CPU", col("cpu_s"), "s"),
        figure(SCENARIO, "moto_server CPU", col("moto_cpu_s"), "s"),
    ]
    return {"figures": figures, "runs": details}
