"""Chaos: the real `telnyx-archiver run`, SIGKILLed at random moments under the fault mix.

A bounded form of bench/chaos.py (see that file for the loop): CHAOS_KILLS kills in total
(default 15), each at a seeded moment drawn over the run's progress, each followed by an
invariant check; every iteration ends with a run that exits 0, then a full check and an audit
of every destination (the last iteration also with `telnyx-archiver verify`). The long mode is
`.venv/bin/python bench/chaos.py --kills 200`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench.chaos import STAGES, ChaosSettings, run_chaos

KILLS = int(os.environ.get("CHAOS_KILLS", "15"))


@pytest.mark.timeout(900)
def test_sigkill_at_random_moments_never_deletes_unarchived_nor_duplicates_a_row(
    s3_endpoint: str, tmp_path: Path
) -> None:
    settings = ChaosSettings(kills=KILLS, kills_per_iteration=6, seed=7, recordings=20)
    lines: list[str] = []
    result = run_chaos(s3_endpoint, tmp_path, settings, log=lines.append)
    summary = json.dumps(
        {k: v for k, v in vars(result).items() if k not in ("violations", "audit_problems")}
    )
    print(f"chaos: {summary}")  # the figures docs/reliability.md quotes (pytest -s shows them)

    assert result.kills == KILLS
    assert sum(result.kills_by_stage.values()) == KILLS
    assert set(result.kills_by_stage) <= set(STAGES)
    assert result.violations == [], "\n".join(result.violations[:10] + lines[-20:])
    assert result.audit_problems == [], result.audit_problems
    assert result.left_in_telnyx == 0, "a clean exit leaves nothing behind"
    assert result.exit_codes.get("0") == result.iterations, "every iteration ended with exit 0"
    assert result.rows == result.recordings, "exactly one row per recording, in the buckets"
    assert result.invariant_checks == KILLS + result.iterations
    hit = {stage for stage, n in result.kills_by_stage.items() if n}
    assert len(hit) >= 3, f"kills should spread over the stages: {result.kills_by_stage}"
    injected = result.faults_injected
    # How many server errors a bounded run meets follows the kill timing; the claim is only
    # that some were injected (the sandbox answers 500 and 503 in turn).
    assert injected.get("500", 0) + injected.get("503", 0) > 0, injected
    for fault in ("429", "reset", "truncated", "expired link 403"):
        assert injected.get(fault, 0) > 0, (fault, injected)
