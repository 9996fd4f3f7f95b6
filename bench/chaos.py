"""Chaos: the real CLI, SIGKILLed at random moments, against a faulty sandbox and moto S3.

Each iteration builds a fresh world: a sandbox (in a thread of this process, so its state can be
read directly) with the fault mix on (429, 5xx, resets, truncated audio, expired links, partial
bulk deletes), three fresh moto buckets, S3 custom-storage credentials registered for two
connections through the sandbox's credential endpoint, and a default destination
s3://<bucket>/archive for the other connections. Then `telnyx-archiver run` is started as a
subprocess and killed with SIGKILL after a seeded random delay, again and again, until a run
exits 0 on its own. After every kill and at the end, the invariants are checked against the
sandbox and the buckets (tests/fixtures/invariants.violations); at the end every destination
is also audited with `telnyx-archiver verify`. Each kill is attributed to the last stage the
run logged (TELNYX_ARCHIVER_STAGE_LOG); "start" means none yet (still starting or listing).

    .venv/bin/python bench/chaos.py --kills 200 [--seed 1] [--recordings 150]

writes bench/results/chaos.json. tests/test_chaos.py runs a bounded version of the same loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3  # noqa: E402

from pipeline.archive.audit import audit, key_of  # noqa: E402
from pipeline.archive.run import STAGE_LOG_ENV  # noqa: E402
from pipeline.archive.verify import matches  # noqa: E402
from pipeline.sandbox import SandboxConfig, ThreadedSandbox  # noqa: E402
from pipeline.storage.s3 import S3Backend  # noqa: E402
from pipeline.storage.settings import StorageSettings  # noqa: E402
from pipeline.telnyx.models import Secret  # noqa: E402
from tests.fixtures.emulators import running_moto  # noqa: E402
from tests.fixtures.invariants import archived_rows, violations  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "chaos.json"
API_KEY = "chaos-sandbox-key-5a1f"
S3_KEY = "testing"
REGION = "us-east-1"
DEFAULT_PREFIX = "archive"
CREDENTIAL_PREFIX = "telnyx-archive"  # StorageSettings.prefix: where credential buckets get it
COMMIT_EVERY = 5
STAGES = ("start", "listed", "stored", "committed", "deleting", "deleted")

FAULTS: dict[str, Any] = {
    "rate_limit": 30.0,
    "rate_burst": 2,  # small, so that even a short run meets 429s
    "fault_5xx": 0.05,
    "fault_reset": 0.03,
    "fault_truncate": 0.05,
    "fault_expire": 0.05,
    "fault_partial_delete": 0.2,
}


@dataclass
class ChaosSettings:
    kills: int = 30  # SIGKILLs in total, across iterations
    kills_per_iteration: int = 6  # then the iteration's runs are left to finish
    seed: int = 1
    recordings: int = 120
    audio_bytes: int = 8192
    start_share: float = 0.15  # kills drawn in the start-up window, before any stage
    start_window: tuple[float, float] = (0.2, 3.0)  # seconds after spawn
    jitter: float = 0.3  # seconds after the drawn stage line
    max_clean_attempts: int = 6  # unkilled reruns allowed to reach exit 0 (faults may fail a few)
    run_timeout: float = 180.0
    verify_with_cli: bool = True  # `telnyx-archiver verify` on each destination, last iteration


@dataclass
class ChaosResult:
    iterations: int = 0
    kills: int = 0
    kills_by_stage: dict[str, int] = field(default_factory=dict)
    runs: int = 0
    exit_codes: dict[str, int] = field(default_factory=dict)  # unkilled runs only
    recordings: int = 0  # created in the sandboxes
    rows: int = 0  # recording rows in the buckets at the end
    invariant_checks: int = 0
    violations: list[str] = field(default_factory=list)
    audits: int = 0
    audit_problems: list[str] = field(default_factory=list)
    left_in_telnyx: int = 0
    faults_injected: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.violations or self.audit_problems or self.left_in_telnyx)


def register_s3_credential(sandbox: ThreadedSandbox, connection_id: str, bucket: str) -> None:
    """POST /custom_storage_credentials/{connection_id}, as a customer would at Telnyx."""
    body = {
        "backend": "s3",
        "configuration": {
            "backend": "s3",
            "bucket": bucket,
            "region": REGION,
            "aws_access_key_id": S3_KEY,
            "aws_secret_access_key": S3_KEY,
        },
    }
    request = urllib.request.Request(
        f"{sandbox.base_url}/custom_storage_credentials/{connection_id}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        if response.status != 200:
            raise RuntimeError(f"credential endpoint answered {response.status}")


def s3_backend(moto_url: str, bucket: str, prefix: str) -> S3Backend:
    return S3Backend(
        bucket=bucket,
        settings=StorageSettings(s3_endpoint_url=moto_url),
        prefix=prefix,
        region=REGION,
        access_key_id=S3_KEY,
        secret_access_key=Secret(S3_KEY),
        endpoint_url=moto_url,
    )


def cli_command() -> list[str]:
    script = REPO / ".venv" / "bin" / "telnyx-archiver"
    return [str(script)] if script.exists() else [sys.executable, "-m", "pipeline"]


@dataclass
class World:
    """One iteration's sandbox, buckets and archiver environment."""

    sandbox: ThreadedSandbox
    moto_url: str
    workdir: Path
    destinations: list[tuple[str, str]]  # (bucket, prefix)
    default_url: str

    def env(self, stage_log: Path) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("TELNYX_", "AWS_", "AZURE_", "STORAGE_EMULATOR"))
        }
        env.update(
            TELNYX_API_KEY=API_KEY,
            TELNYX_BASE_URL=self.sandbox.base_url,
            AWS_ENDPOINT_URL=self.moto_url,
            AWS_ACCESS_KEY_ID=S3_KEY,
            AWS_SECRET_ACCESS_KEY=S3_KEY,
            AWS_DEFAULT_REGION=REGION,
            **{STAGE_LOG_ENV: str(stage_log)},
        )
        return env

    def backends(self) -> list[S3Backend]:
        return [s3_backend(self.moto_url, b, p) for b, p in self.destinations]


def write_config(workdir: Path) -> Path:
    path = workdir / "archiver.toml"
    path.write_text(
        "[telnyx]\n"
        "requests_per_second = 300.0\n"
        "max_attempts = 8\n"
        "timeout = 10.0\n"
        "[archive]\n"
        f"commit_every = {COMMIT_EVERY}\n"
        "concurrency = 8\n"
        f'state_dir = "{workdir / "state"}"\n'
    )
    return path


@contextmanager
def world(moto_url: str, workdir: Path, iteration: int, s: ChaosSettings) -> Iterator[World]:
    config = SandboxConfig(
        recordings=s.recordings,
        seed=s.seed * 1000 + iteration,
        api_key=API_KEY,
        audio_bytes=s.audio_bytes,
        connections=4,
        fault_seed=s.seed * 1000 + iteration,
    )
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_url,
        region_name=REGION,
        aws_access_key_id=S3_KEY,
        aws_secret_access_key=S3_KEY,
    )
    tag = f"chaos-{s.seed}-{iteration}"
    buckets = [f"{tag}-default", f"{tag}-conn0", f"{tag}-conn1"]
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
    with ThreadedSandbox(config) as sandbox:
        conns = sandbox.state.connection_ids
        register_s3_credential(sandbox, conns[0], buckets[1])
        register_s3_credential(sandbox, conns[1], buckets[2])
        # Faults only after set-up: the credential calls above are the customer's, not ours.
        config.update(FAULTS)
        yield World(
            sandbox=sandbox,
            moto_url=moto_url,
            workdir=workdir,
            destinations=[
                (buckets[0], DEFAULT_PREFIX),
                (buckets[1], CREDENTIAL_PREFIX),
                (buckets[2], CREDENTIAL_PREFIX),
            ],
            default_url=f"s3://{buckets[0]}/{DEFAULT_PREFIX}",
        )


def last_stage(stage_log: Path) -> str:
    if not stage_log.exists():
        return "start"
    lines = stage_log.read_text().split()
    return lines[-1] if lines else "start"


def spawn_run(w: World, config: Path, name: str) -> tuple[subprocess.Popen[bytes], Path]:
    stage_log = w.workdir / f"{name}.stages"
    out = open(w.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed when the run ends
    proc = subprocess.Popen(
        [*cli_command(), "--config", str(config), "run", "--destination", w.default_url],
        env=w.env(stage_log),
        stdout=out,
        stderr=subprocess.STDOUT,
        cwd=w.workdir,
    )
    out.close()
    return proc, stage_log


def check(w: World, result: ChaosResult, when: str, *, audio_bytes: bool) -> None:
    """The invariants now. Without audio_bytes the stored audio is checked by its stat (size and
    the store's or our sha256) instead of being read back: cheap enough after every kill."""

    async def go() -> list[str]:
        backends = w.backends()
        try:
            found = await violations(w.sandbox, backends, check_audio_bytes=audio_bytes)
            if not audio_bytes:
                found += await stat_check(w.sandbox, backends)
            return found
        finally:
            for b in backends:
                await b.close()

    result.invariant_checks += 1
    result.violations += [f"{when}: {v}" for v in asyncio.run(go())]


async def stat_check(sandbox: ThreadedSandbox, backends: list[S3Backend]) -> list[str]:
    recordings, _ = await archived_rows(backends)
    rows = {r["id"]: r for r in recordings}
    found = []
    for rid in sandbox.state.deleted_recording_ids:
        row = rows.get(rid)
        if row is None:
            continue  # violations() already names it
        backend = row["_backend"]
        size, sha = sandbox.state.audio_digest(rid, "mp3")
        if not matches(await backend.stat(key_of(backend, row["audio_uri"])), size, sha):
            found.append(f"recording {rid} was deleted but its stored audio is missing or wrong")
    return found


def final_audit(w: World, with_cli: bool, result: ChaosResult, when: str) -> None:
    async def go() -> list[tuple[str, Any]]:
        out = []
        for backend in w.backends():
            try:
                out.append((backend.root_uri(), await audit(backend)))
            finally:
                await backend.close()
        return out

    for uri, report in asyncio.run(go()):
        result.audits += 1
        result.rows += report.rows
        if not report.ok:
            result.audit_problems.append(
                f"{when}: {uri}: missing {report.missing_audio[:3]}, bad {report.bad_audio[:3]}, "
                f"orphans {report.orphan_audio[:3]}, duplicates {report.duplicate_rows[:3]}"
            )
    if not with_cli:
        return
    env = w.env(w.workdir / "verify.stages")
    for bucket, prefix in w.destinations:
        url = f"s3://{bucket}/{prefix}"
        proc = subprocess.run(
            [*cli_command(), "verify", "--destination", url],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=w.workdir,
        )
        result.audits += 1
        if proc.returncode != 0:
            result.audit_problems.append(
                f"{when}: verify {url} exited {proc.returncode}: {proc.stdout[-400:]}{proc.stderr[-400:]}"
            )


def expected_stage_lines(remaining: int, commit_every: int) -> int:
    """Stage lines a run over `remaining` recordings writes: listed, stored per recording, and
    committed + deleting + deleted per batch."""
    return 1 + remaining + 3 * -(-remaining // commit_every)


@dataclass(frozen=True)
class KillPlan:
    """Kill once the stage log has `lines` lines, `jitter` seconds later; lines 0: `jitter`
    seconds after the spawn (while starting, preflighting, listing)."""

    lines: int
    jitter: float


def plan_kill(rng: random.Random, remaining: int, s: ChaosSettings) -> KillPlan:
    # A moment drawn uniformly over the run's progress, not its wall clock: the machine's
    # speed (CI, a loaded laptop) then does not decide which stages get hit.
    if rng.random() < s.start_share:
        return KillPlan(0, rng.uniform(*s.start_window))
    lines = rng.randint(1, expected_stage_lines(remaining, COMMIT_EVERY))
    return KillPlan(lines, rng.uniform(0.0, s.jitter))


def stage_lines(stage_log: Path) -> list[str]:
    try:
        return stage_log.read_text().split()
    except FileNotFoundError:
        return []


def run_until(
    proc: subprocess.Popen[bytes], stage_log: Path, plan: KillPlan, timeout: float
) -> bool:
    """Wait for the plan's moment; True if the process was still running then (not yet killed)."""
    t0 = time.monotonic()
    reached: float | None = t0 if plan.lines == 0 else None
    while proc.poll() is None:
        now = time.monotonic()
        if reached is None and len(stage_lines(stage_log)) >= plan.lines:
            reached = now
        if reached is not None and now - reached >= plan.jitter:
            return True
        if now - t0 > timeout:
            raise RuntimeError(f"no stage line {plan.lines} within {timeout} s")
        time.sleep(0.005)
    return False


def run_iteration(
    moto_url: str,
    workdir: Path,
    iteration: int,
    s: ChaosSettings,
    rng: random.Random,
    result: ChaosResult,
    log: Any = None,
) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir)
    kills_here = 0
    clean_attempts = 0
    with world(moto_url, workdir, iteration, s) as w:
        result.recordings += len(w.sandbox.state.recordings)
        for n in range(1, 1000):
            name = f"run-{n:03d}"
            may_kill = kills_here < s.kills_per_iteration and result.kills < s.kills
            plan = plan_kill(rng, len(w.sandbox.state.recordings), s) if may_kill else None
            proc, stage_log = spawn_run(w, config, name)
            started = time.monotonic()
            result.runs += 1
            if plan is not None and run_until(proc, stage_log, plan, s.run_timeout):
                proc.send_signal(signal.SIGKILL)
                proc.wait(30)
                lines = stage_lines(stage_log)
                stage = lines[-1] if lines else "start"
                kills_here += 1
                result.kills += 1
                result.kills_by_stage[stage] = result.kills_by_stage.get(stage, 0) + 1
                if log:
                    log(
                        f"iteration {iteration} {name}: SIGKILL at {stage} after "
                        f"{time.monotonic() - started:.1f} s ({len(lines)} stage lines)"
                    )
                t_check = time.monotonic()
                check(
                    w,
                    result,
                    f"iteration {iteration} after kill {kills_here} ({stage})",
                    audio_bytes=False,
                )
                if log:
                    log(f"  invariants checked in {time.monotonic() - t_check:.1f} s")
                continue
            try:
                code = proc.wait(timeout=s.run_timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)
                raise RuntimeError(
                    f"iteration {iteration} {name}: no exit in {s.run_timeout} s"
                ) from None
            result.exit_codes[str(code)] = result.exit_codes.get(str(code), 0) + 1
            if log:
                log(
                    f"iteration {iteration} {name}: exit {code} after {time.monotonic() - started:.1f} s"
                )
            if code == 0:
                break
            tail = (workdir / f"{name}.log").read_text(errors="replace")[-1500:]
            if code != 1:
                raise RuntimeError(f"iteration {iteration} {name}: exit {code}\n{tail}")
            if not may_kill:
                clean_attempts += 1
                if clean_attempts >= s.max_clean_attempts:
                    raise RuntimeError(
                        f"iteration {iteration}: no clean exit in {clean_attempts} reruns\n{tail}"
                    )
        check(w, result, f"iteration {iteration} final", audio_bytes=True)
        result.left_in_telnyx += len(w.sandbox.state.recordings)
        last = result.kills >= s.kills
        final_audit(w, s.verify_with_cli and last, result, f"iteration {iteration}")
        for key, count in w.sandbox.state.request_counts.items():
            outcome = key.rsplit(" ", 1)[-1]
            if outcome in ("429", "500", "503", "reset", "truncated", "403"):
                label = "expired link 403" if outcome == "403" else outcome
                result.faults_injected[label] = result.faults_injected.get(label, 0) + count
    result.iterations += 1


def run_chaos(moto_url: str, workdir: Path, s: ChaosSettings, log: Any = None) -> ChaosResult:
    """Iterations until s.kills SIGKILLs were delivered; each ends with a clean run."""
    result = ChaosResult(kills_by_stage={stage: 0 for stage in STAGES})
    rng = random.Random(s.seed)
    t0 = time.monotonic()
    iteration = 0
    while result.kills < s.kills:
        iteration += 1
        before = result.kills
        run_iteration(
            moto_url, workdir / f"iteration-{iteration:03d}", iteration, s, rng, result, log
        )
        if result.kills == before and iteration > 3 * s.kills:
            break  # runs end before any kill: the kill window is too late for this machine
    result.seconds = round(time.monotonic() - t0, 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200)
    parser.add_argument("--kills-per-iteration", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--recordings", type=int, default=150)
    parser.add_argument("--audio-bytes", type=int, default=8192)
    parser.add_argument("--jitter", type=float, default=0.3)
    parser.add_argument("--no-cli-verify", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--workdir", type=Path, help="Keep run logs here (default: a temp dir).")
    args = parser.parse_args(argv)
    settings = ChaosSettings(
        kills=args.kills,
        kills_per_iteration=args.kills_per_iteration,
        seed=args.seed,
        recordings=args.recordings,
        audio_bytes=args.audio_bytes,
        jitter=args.jitter,
        verify_with_cli=not args.no_cli_verify,
    )
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        with running_moto(workdir) as moto_url:
            result = run_chaos(
                moto_url, workdir, settings, log=lambda m: print(m, file=sys.stderr, flush=True)
            )
    summary = asdict(result) | {"ok": result.ok, "settings": asdict(settings)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
