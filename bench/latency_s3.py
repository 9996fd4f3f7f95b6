"""Scenario 2's archiver -> moto S3 run alone, once: for profiling and quick before/after checks.

    .venv/bin/python bench/latency_s3.py [N]              # prints wall, CPU and recordings/s
    BENCH_PYSPY=/tmp/archiver.stacks .venv/bin/python bench/latency_s3.py

py-spy can be attached to moto_server too: `py-spy record -p <pid> -f raw -o moto.stacks`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import procs  # noqa: E402
from scenarios import latency  # noqa: E402


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1500
    with procs.moto(latency.BUCKET) as s3:
        result = latency.archiver_run(n, f"s3://{latency.BUCKET}/once", procs.s3_env(s3.url), s3)
    keys = ("wall_s", "cpu_s", "moto_cpu_s", "sandbox_cpu_s", "recordings_per_s")
    print(json.dumps({k: round(result[k], 2) for k in keys}))


if __name__ == "__main__":
    main()
