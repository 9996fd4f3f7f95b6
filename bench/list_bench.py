"""Listing benchmark: TelnyxClient.list_recordings against a local server with fixed latency.

The server (aiohttp.web, in a process of its own, on a free loopback port) holds
10,000 recordings and answers each GET /v2/recordings after 50 ms. With page size 250 that is
40 pages; a sequential walk costs at least pages x latency. The script prints the median wall
time of 3 runs per client setting next to that sequential floor, and two other floors for
context: decoding + parsing the pages with no network, and plain aiohttp fetching the same pages
8 at a time with json.loads only. It writes bench/results/list_bench.json.

    .venv/bin/python bench/list_bench.py [--recordings 10000] [--page-size 250] [--latency 0.05]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.telnyx import TelnyxClient  # noqa: E402
from pipeline.telnyx.models import Recording  # noqa: E402
from pipeline.telnyx.pagination import parse_page  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "list_bench.json"


def make_recordings(count: int) -> list[dict[str, Any]]:
    return [
        {
            "id": str(uuid.UUID(int=n)),
            "record_type": "recording",
            "connection_id": "1750000000",
            "channels": "dual",
            "source": "call",
            "status": "completed",
            "from": "+15551234567",
            "to": "+15557654321",
            "duration_millis": 60_000,
            "recording_started_at": "2026-08-01T10:00:00.000Z",
            "recording_ended_at": "2026-08-01T10:01:00.000Z",
            "created_at": "2026-08-01T10:01:01.000Z",
            "updated_at": "2026-08-01T10:01:01.000Z",
            "download_urls": {"mp3": f"https://example.invalid/{n}.mp3"},
        }
        for n in range(1, count + 1)
    ]


def serve(recordings: int, latency: float, port_out: Any, count: Any) -> None:
    """The fake API; runs in a process of its own so its JSON work does not share our GIL."""
    items = make_recordings(recordings)

    async def list_page(request: web.Request) -> web.Response:
        with count.get_lock():
            count.value += 1
        await asyncio.sleep(latency)
        number = int(request.query.get("page[number]", "1"))
        size = int(request.query.get("page[size]", "20"))
        meta = {
            "page_number": number,
            "page_size": size,
            "total_pages": -(-len(items) // size),
            "total_results": len(items),
        }
        chunk = items[(number - 1) * size : number * size]
        return web.json_response({"data": chunk, "meta": meta})

    async def run() -> None:
        app = web.Application()
        app.router.add_get("/v2/recordings", list_page)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port_out.put(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        await asyncio.Event().wait()

    asyncio.run(run())


class Server:
    def __init__(self, recordings: int, latency: float) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._port: Any = ctx.Queue()
        self._count: Any = ctx.Value("i", 0)
        self._proc = ctx.Process(
            target=serve, args=(recordings, latency, self._port, self._count), daemon=True
        )
        self.port = 0

    @property
    def requests(self) -> int:
        return int(self._count.value)

    def __enter__(self) -> Server:
        self._proc.start()
        self.port = self._port.get(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self._proc.terminate()
        self._proc.join(10)


async def list_once(base_url: str, page_size: int, settings: dict[str, Any]) -> tuple[float, int]:
    async with TelnyxClient("bench-key", base_url, **settings) as client:
        started = time.perf_counter()
        ids = {r.id async for r in client.list_recordings(page_size=page_size)}
        return time.perf_counter() - started, len(ids)


async def raw_baseline(base_url: str, page_size: int, pages: int, in_flight: int) -> float:
    """Plain aiohttp, same pages and concurrency, json.loads only: the floor of this setup."""
    import aiohttp

    async with aiohttp.ClientSession() as session:
        gate = asyncio.Semaphore(in_flight)

        async def page(n: int) -> None:
            params = {"page[number]": str(n), "page[size]": str(page_size)}
            async with gate, session.get(f"{base_url}/recordings", params=params) as response:
                json.loads(await response.read())

        started = time.perf_counter()
        await page(1)
        await asyncio.gather(*(page(n) for n in range(2, pages + 1)))
        return time.perf_counter() - started


def parse_floor(recordings: int, page_size: int) -> float:
    """CPU time to decode and parse every page once, without any network: the client's floor."""
    pages = [
        json.dumps({"data": chunk}).encode()
        for chunk in (
            make_recordings(recordings)[i : i + page_size] for i in range(0, recordings, page_size)
        )
    ]
    started = time.perf_counter()
    for body in pages:
        parse_page(json.loads(body), Recording.from_api)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=250)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    pages = -(-args.recordings // args.page_size)
    sequential = pages * args.latency
    setups: dict[str, dict[str, Any]] = {
        "defaults (20 req/s, 8 pages in flight)": {},
        "40 req/s, 8 pages in flight": {"requests_per_second": 40.0},
        "no rate limit, 8 pages in flight": {"requests_per_second": 10_000.0},
        "no rate limit, 16 pages in flight": {
            "requests_per_second": 10_000.0,
            "page_concurrency": 16,
        },
    }
    rows = []
    floor = statistics.median(
        parse_floor(args.recordings, args.page_size) for _ in range(args.runs)
    )
    with Server(args.recordings, args.latency) as server:
        base_url = f"http://127.0.0.1:{server.port}/v2"
        print(
            f"{args.recordings} recordings, page size {args.page_size} -> {pages} pages, "
            f"{args.latency * 1000:.0f} ms per request; sequential floor {sequential:.2f} s"
        )
        print(f"decoding + parsing all pages, no network (CPU floor): {floor:.2f} s")
        baseline = statistics.median(
            asyncio.run(raw_baseline(base_url, args.page_size, pages, 8)) for _ in range(args.runs)
        )
        print(
            f"plain aiohttp, 8 pages in flight, json.loads only (transport floor): {baseline:.2f} s"
        )
        print(f"{'client setting':42} {'median s':>9} {'runs s':>20} {'vs sequential':>14}")
        for name, settings in setups.items():
            times = []
            for _ in range(args.runs):
                before = server.requests
                elapsed, count = asyncio.run(list_once(base_url, args.page_size, settings))
                if count != args.recordings or server.requests - before != pages:
                    raise SystemExit(
                        f"{name}: listed {count} ids in {server.requests - before} requests"
                    )
                times.append(elapsed)
            median = statistics.median(times)
            runs = ", ".join(f"{t:.2f}" for t in times)
            print(f"{name:42} {median:9.2f} {runs:>20} {sequential / median:13.1f}x")
            rows.append(
                {
                    "setting": name,
                    "client_kwargs": settings,
                    "runs_s": [round(t, 4) for t in times],
                    "median_s": round(median, 4),
                    "speedup_vs_sequential": round(sequential / median, 2),
                }
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "recordings": args.recordings,
                "page_size": args.page_size,
                "pages": pages,
                "latency_s": args.latency,
                "sequential_floor_s": round(sequential, 4),
                "parse_cpu_floor_s": round(floor, 4),
                "plain_aiohttp_8_in_flight_s": round(baseline, 4),
                "runs_per_setting": args.runs,
                "results": rows,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            },
            indent=2,
        )
        + "\n"
    )
    print(
        f"wrote {RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS}"
    )


if __name__ == "__main__":
    main()
