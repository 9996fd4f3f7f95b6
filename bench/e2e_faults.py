"""End to end: N sandbox recordings into moto S3 with the sandbox's fault mix on.

The sandbox and moto_server run as separate processes; the archiver runs here. Afterwards the
invariants are checked against the sandbox's state and the bucket: everything archived, zero
duplicate rows, zero deletions without verified audio and a row.

    .venv/bin/python bench/e2e_faults.py --recordings 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import boto3  # noqa: E402

from pipeline.archive.audit import audit  # noqa: E402
from pipeline.archive.options import ArchiveOptions, Window  # noqa: E402
from pipeline.archive.run import archive  # noqa: E402
from pipeline.storage.select import backend_for_url  # noqa: E402
from pipeline.storage.settings import StorageSettings  # noqa: E402
from pipeline.telnyx import TelnyxClient  # noqa: E402
from tests.fixtures.invariants import archived_rows  # noqa: E402
from tests.fixtures.servers import free_port, stop, wait_http  # noqa: E402

FAULTS = dict(
    fault_5xx=0.03,
    fault_reset=0.01,
    fault_truncate=0.02,
    fault_expire=0.02,
    fault_partial_delete=0.1,
)


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recordings", type=int, default=10_000)
    ap.add_argument("--audio-bytes", type=int, default=16 * 1024)
    ap.add_argument(
        "--rate-limit", type=float, default=200.0, help="sandbox token bucket, requests/s"
    )
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=str(REPO / "bench/results/e2e_faults.json"))
    args = ap.parse_args()

    logs = REPO / "bench/results"
    logs.mkdir(parents=True, exist_ok=True)
    moto_port, sandbox_port = free_port(), free_port()
    moto = subprocess.Popen(
        [str(REPO / ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(moto_port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    flags = [f"--{k.replace('_', '-')}={v}" for k, v in FAULTS.items()]
    sandbox = subprocess.Popen(
        [sys.executable, "-m", "pipeline.sandbox", "--port", str(sandbox_port), "--recordings",
         str(args.recordings), "--seed", str(args.seed), "--audio-bytes", str(args.audio_bytes),
         "--rate-limit", str(args.rate_limit), "--rate-burst", "20", "--fault-seed", "7", *flags],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        s3_url = f"http://127.0.0.1:{moto_port}"
        base = f"http://127.0.0.1:{sandbox_port}"
        wait_http(f"{s3_url}/moto-api/", moto)
        wait_http(f"{base}/_sandbox/state", sandbox, timeout=300)
        os.environ.update(
            AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_DEFAULT_REGION="us-east-1"
        )
        boto3.client("s3", endpoint_url=s3_url, region_name="us-east-1").create_bucket(
            Bucket="archive"
        )
        storage = StorageSettings(default_destination="s3://archive/telnyx", s3_endpoint_url=s3_url)
        window = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) - timedelta(hours=24))

        runs = []
        t0 = time.perf_counter()
        calls: Counter[str] = Counter()
        for attempt in range(1, 4):  # a fault may leave a few for the next run, as a nightly would
            async with TelnyxClient(
                "sandbox-key", f"{base}/v2", requests_per_second=args.rate_limit
            ) as client:
                t = time.perf_counter()
                report = await archive(
                    window, client=client, storage=storage, options=ArchiveOptions()
                )
                runs.append(
                    dict(run=attempt, seconds=round(time.perf_counter() - t, 1), archived=report.recordings_archived,
                         deleted=report.recordings_deleted, failed=report.recordings_failed, errors=len(report.errors))
                )  # fmt: skip
                calls.update(client.stats.snapshot())
            if not get_json(f"{base}/_sandbox/state")["recordings"]["remaining"]:
                break
        wall = time.perf_counter() - t0

        state = get_json(f"{base}/_sandbox/state")
        backend = backend_for_url(storage.default_destination, storage)
        recordings, transcriptions = await archived_rows([backend])
        rows = {r["id"]: r for r in recordings}
        dup_rec = sum(n - 1 for n in Counter(r["id"] for r in recordings).values() if n > 1)
        dup_tr = sum(n - 1 for n in Counter(t["id"] for t in transcriptions).values() if n > 1)
        unverified = 0
        for rid in state["recordings"]["deleted"]:
            digest = get_json(f"{base}/_sandbox/audio/{rid}")["mp3"]
            row = rows.get(rid)
            if row is None or (row["audio_size"], row["audio_sha256"]) != (
                digest["size"],
                digest["sha256"],
            ):
                unverified += 1
        tr_rows = {t["id"] for t in transcriptions}
        tr_unarchived = sum(1 for t in state["transcriptions"]["deleted"] if t not in tr_rows)
        found = await audit(backend)
        await backend.close()

        n_tr = len(state["transcriptions"]["deleted"]) + len(state["transcriptions"]["remaining"])
        connections = len(state["connection_ids"])
        minimum = {
            "GET /recordings": math.ceil(args.recordings / 250),
            "GET /recording_transcriptions": math.ceil(n_tr / 250),
            "GET /custom_storage_credentials/{connection_id}": connections,
            "POST /recordings/actions/delete": math.ceil(args.recordings / 100),
            "DELETE /recording_transcriptions/{id}": n_tr,
        }
        made: Counter[str] = Counter()
        for key, n in calls.items():
            if key.startswith("retry"):
                continue
            made[key.rsplit(" ", 1)[0]] += n
        result = {
            "recordings": args.recordings,
            "transcriptions": n_tr,
            "faults": FAULTS,
            "sandbox_rate_limit": args.rate_limit,
            "runs": runs,
            "wall_seconds": round(wall, 1),
            "remaining_in_telnyx": len(state["recordings"]["remaining"]),
            "recording_rows": len(recordings),
            "duplicate_recording_rows": dup_rec,
            "duplicate_transcription_rows": dup_tr,
            "deleted_without_verified_row": unverified,
            "transcriptions_deleted_without_row": tr_unarchived,
            "audit_ok": found.ok,
            "api_calls_by_endpoint": dict(sorted(made.items())),
            "api_calls_minimum": minimum,
            "retries": {k: v for k, v in calls.items() if k.startswith("retry")},
            "sandbox_saw": state["requests"],
        }
        print(json.dumps(result, indent=2))
        Path(args.json).write_text(json.dumps(result, indent=2))
        ok = (
            not (dup_rec or dup_tr or unverified or tr_unarchived or result["remaining_in_telnyx"])
            and found.ok
        )
        return 0 if ok else 1
    finally:
        stop(sandbox)
        stop(moto)


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
