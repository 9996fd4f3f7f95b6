"""Every benchmark scenario, each run 3 times: prints a table of medians, writes JSON.

    .venv/bin/python bench/run_all.py [--runs 3] [--only rate_limited,latency,memory] [--quick]

1. rate-limited: wall time against the rate limit's bound (minimum API calls / R), moto S3
2. latency-bound: recordings/s against the sequential SDK script, moto S3 and a local folder
3. memory: the archiver's peak RSS at N and 10 x N recordings, and for one 1 GiB recording

The sandbox, moto_server and the archiver each run in a process of their own. The table and
every run's details go to bench/results/run_all.json. --quick: small sizes, a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import procs  # noqa: E402
from scenarios import latency, memory, rate_limited  # noqa: E402

RESULTS = BENCH / "results" / "run_all.json"
SCENARIOS = {
    "rate_limited": (rate_limited.run, {}, {"recordings": 300}),
    "latency": (latency.run, {}, {"recordings": 200, "baseline_recordings": 40}),
    "memory": (memory.run, {}, {"recordings": 50}),
}


def table(figures: list[dict[str, Any]]) -> str:
    rows = [("scenario", "figure", "median", "runs", "target", "")]
    for f in figures:
        unit = f" {f['unit']}" if f["unit"] else ""
        runs = ", ".join(_num(r) for r in f["runs"])
        mark = "" if f["ok"] is None else ("ok" if f["ok"] else "MISSED")
        rows.append(
            (f["scenario"], f["figure"], f"{_num(f['median'])}{unit}", runs, f["target"], mark)
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def _num(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}".rstrip("0")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", default=",".join(SCENARIOS), help="comma-separated scenarios")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {sorted(SCENARIOS)}")
    started = time.perf_counter()
    figures: list[dict[str, Any]] = []
    details: dict[str, Any] = {}
    for name in chosen:
        run, full, quick = SCENARIOS[name]
        t0 = time.perf_counter()
        print(f"-- {name} ({args.runs} runs) ...", file=sys.stderr, flush=True)
        load = procs.load_average()
        out = run(runs=args.runs, **(quick if args.quick else full))
        figures += out["figures"]
        details[name] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "load_average_1m": [load, procs.load_average()],
            "runs": out["runs"],
        }
        print(f"   {name}: {details[name]['seconds']} s", file=sys.stderr, flush=True)
    total = time.perf_counter() - started
    printed = table(figures)
    print(printed)
    loads = "; ".join(
        f"{name} {d['load_average_1m'][0]:.1f} -> {d['load_average_1m'][1]:.1f}"
        for name, d in details.items()
    )
    print(f"\ntotal {total:.0f} s; medians of {args.runs} runs; {os.cpu_count()} CPUs")
    print(f"machine load (1-min average) at start -> end: {loads}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "command": "python bench/run_all.py " + " ".join(sys.argv[1:]),
                "runs_per_figure": args.runs,
                "quick": args.quick,
                "total_seconds": round(total, 1),
                "table": printed,
                "figures": figures,
                "details": details,
                "python": platform.python_version(),
                "cpus": os.cpu_count(),
                "load_average_1m_at_end": procs.load_average(),
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    missed = [f for f in figures if f["ok"] is False]
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
