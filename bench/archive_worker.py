"""One archiver run in a process of its own, so its wall time and peak RSS are its alone.

    .venv/bin/python bench/archive_worker.py '<json spec>'

The spec: base_url, api_key, destination (URL), client (TelnyxClient keyword arguments),
options (ArchiveOptions fields; timedelta fields in seconds), storage (StorageSettings fields),
without_modules (names made unimportable, e.g. ["pandas"]).
Prints one JSON line: wall seconds and CPU seconds of archive() alone, the run report's counts,
the client's call counts, when each stage was first and last reached, and this process's peak
RSS (VmHWM, the kernel's own high-water mark).
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class _Without:
    """Makes modules unimportable, e.g. pandas: the dev venv has it and pyarrow imports it on
    its first array, but the installed archiver (its runtime dependencies) does not have it."""

    def __init__(self, names: list[str]) -> None:
        self.names = names

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


SPEC: dict[str, Any] = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
if SPEC.get("without_modules"):
    sys.meta_path.insert(0, _Without(SPEC["without_modules"]))

import pyarrow as pa  # noqa: E402

from pipeline.archive.options import ArchiveOptions, Window  # noqa: E402
from pipeline.archive.run import archive  # noqa: E402
from pipeline.storage.settings import StorageSettings  # noqa: E402
from pipeline.telnyx import TelnyxClient  # noqa: E402

WINDOW = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) - timedelta(hours=24))
_TIMEDELTAS = {"transcription_lag", "transcription_grace"}


def peak_rss_bytes(pid: int | str = "self") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(spec: dict[str, Any]) -> dict[str, Any]:
    options = ArchiveOptions(
        **{
            k: timedelta(seconds=v) if k in _TIMEDELTAS else v
            for k, v in spec.get("options", {}).items()
        }
    )
    storage = StorageSettings(default_destination=spec["destination"], **spec.get("storage", {}))
    # pyarrow imports pandas (when installed, as in the dev venv) on its first array: a one-off
    # cost of the environment, paid here rather than inside the timed run.
    pa.array([0])
    rss_before = peak_rss_bytes()
    async with TelnyxClient(spec["api_key"], spec["base_url"], **spec.get("client", {})) as client:
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        stages: dict[str, list[float]] = {}

        def on_stage(stage: str) -> None:
            at = time.perf_counter() - started
            stages.setdefault(stage, [at, at])[1] = at

        report = await archive(
            WINDOW, client=client, storage=storage, options=options, on_stage=on_stage
        )
        wall = time.perf_counter() - started
        cpu = cpu_seconds() - cpu_before
    return {
        "wall_s": wall,
        "peak_rss_bytes": peak_rss_bytes(),
        "cpu_s": cpu,  # user + system, every thread, during archive()
        "peak_rss_before_run_bytes": rss_before,
        "pandas_loaded": "pandas" in sys.modules,
        "ok": report.ok,
        "errors": report.errors[:5],
        "slices": report.slices_total,
        "recordings_listed": report.recordings_listed,
        "recordings_archived": report.recordings_archived,
        "recordings_deleted": report.recordings_deleted,
        "recordings_failed": report.recordings_failed,
        "recordings_deferred": report.recordings_deferred,
        "transcriptions_archived": report.transcriptions_archived,
        "transcriptions_deleted": report.transcriptions_deleted,
        "bytes_uploaded": report.bytes_uploaded,
        "api_calls": report.api_calls,
        "stages_first_last_s": {k: [round(a, 3), round(b, 3)] for k, (a, b) in stages.items()},
    }


def main() -> None:
    print(json.dumps(asyncio.run(run(SPEC))), flush=True)


if __name__ == "__main__":
    main()
