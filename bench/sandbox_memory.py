"""Bench: the sandbox streams a 1 GiB recording with bounded memory.

Starts `python -m pipeline.sandbox` in a subprocess with one recording of --size bytes, downloads
its mp3 fully with aiohttp (discarding bytes, hashing them), and records the sandbox process's peak
RSS (VmHWM from /proc, plus psutil polling). Passes if the peak stays under --limit-mib.

    .venv/bin/python bench/sandbox_memory.py [--size 1073741824] [--runs 3] [--limit-mib 100]

Writes bench/results/sandbox_memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import aiohttp
import psutil

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "sandbox_memory.json"
MIB = 1024 * 1024


def vm_hwm_bytes(pid: int) -> int:
    """The kernel's own peak resident set size of the process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found")


class RssPoller:
    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.proc = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.every)

    def __enter__(self) -> RssPoller:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


async def download(base: str, key: str) -> tuple[int, str, float, str]:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as api,
        api.get(base + "/recordings") as r,
    ):
        rec = (await r.json())["data"][0]
    h = hashlib.sha256()
    total = 0
    started = time.perf_counter()
    async with aiohttp.ClientSession() as keyless, keyless.get(rec["download_urls"]["mp3"]) as r:
        r.raise_for_status()
        async for chunk in r.content.iter_chunked(256 * 1024):
            h.update(chunk)
            total += len(chunk)
    return total, h.hexdigest(), time.perf_counter() - started, rec["id"]


def one_run(size: int) -> dict[str, float | int | bool]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipeline.sandbox",
            "--port",
            "0",
            "--recordings",
            "1",
            "--audio-bytes",
            str(size),
            "--api-key",
            "bench-key",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        base = proc.stdout.readline().split(": ", 1)[1].strip()
        idle = psutil.Process(proc.pid).memory_info().rss
        with RssPoller(proc.pid) as poller:
            total, sha, seconds, rid = asyncio.run(download(base, "bench-key"))
        hwm = vm_hwm_bytes(proc.pid)
        # The sandbox computes its own digest by streaming the generator again (GET /_sandbox/audio).
        with urllib.request.urlopen(f"{base[:-3]}/_sandbox/audio/{rid}", timeout=600) as r:
            expected = json.load(r)["mp3"]
        return {
            "bytes": total,
            "sha256_ok": expected == {"size": total, "sha256": sha},
            "seconds": round(seconds, 3),
            "mib_per_s": round(total / MIB / seconds, 1),
            "idle_rss_mib": round(idle / MIB, 1),
            "peak_rss_polled_mib": round(poller.peak / MIB, 1),
            "peak_rss_vmhwm_mib": round(hwm / MIB, 1),  # kernel's peak, right after the download
            "peak_rss_vmhwm_incl_digest_mib": round(vm_hwm_bytes(proc.pid) / MIB, 1),
        }
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024 * MIB)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--limit-mib", type=float, default=100.0)
    args = parser.parse_args()

    runs = []
    for i in range(args.runs):
        run = one_run(args.size)
        runs.append(run)
        print(f"run {i + 1}: {json.dumps(run)}", flush=True)
    peak = statistics.median(r["peak_rss_vmhwm_incl_digest_mib"] for r in runs)
    summary = {
        "benchmark": "sandbox_memory",
        "size_bytes": args.size,
        "runs": runs,
        "median_peak_rss_mib": peak,
        "max_peak_rss_mib": max(r["peak_rss_vmhwm_incl_digest_mib"] for r in runs),
        "median_mib_per_s": statistics.median(r["mib_per_s"] for r in runs),
        "limit_mib": args.limit_mib,
        "all_sha256_ok": all(r["sha256_ok"] for r in runs),
        "passed": all(r["sha256_ok"] for r in runs)
        and max(r["peak_rss_vmhwm_incl_digest_mib"] for r in runs) < args.limit_mib,
        "python": sys.version.split()[0],
        "cpus": psutil.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"peak RSS of the sandbox: median {peak} MiB, max {summary['max_peak_rss_mib']} MiB "
        f"(limit {args.limit_mib} MiB); download {summary['median_mib_per_s']} MiB/s; "
        f"sha256 ok: {summary['all_sha256_ok']} -> {'PASS' if summary['passed'] else 'FAIL'}"
    )
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
