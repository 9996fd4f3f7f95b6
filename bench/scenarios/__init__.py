"""The benchmark scenarios; each `run(runs)` returns its figures (median of the runs) and details."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from typing import Any

MiB = 1024 * 1024


def figure(
    scenario: str,
    name: str,
    runs: Sequence[float],
    unit: str,
    *,
    target: str = "",
    ok: Callable[[float], bool] | None = None,
    digits: int = 2,
) -> dict[str, Any]:
    """One row of the table: the median of the runs, and whether it meets its target."""
    median = statistics.median(runs)
    return {
        "scenario": scenario,
        "figure": name,
        "median": round(median, digits),
        "unit": unit,
        "runs": [round(r, digits) for r in runs],
        "target": target,
        "ok": None if ok is None else bool(ok(median)),
    }
