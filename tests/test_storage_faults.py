"""Destinations failing under a running archive: nothing half-written shows, nothing unarchived
leaves Telnyx, and every affected recording is reported.

- an upload cut midway (every download truncated) leaves no visible object, on every store;
- a destination that disappears (bucket emptied and deleted, folder moved away) or turns
  read-only (chattr +i, which binds root too) mid-run: the affected recordings stay in Telnyx
  with a one-line error, the ones committed before are intact, a rerun finishes the job;
- a Parquet write that fails (or cannot be read back) deletes nothing of its batch.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.archive.options import ArchiveOptions, RunReport, Window
from pipeline.archive.run import archive
from pipeline.sandbox import SandboxConfig, SandboxServer
from pipeline.storage.base import Backend, StorageError
from pipeline.storage.local import LocalBackend
from pipeline.storage.select import backend_for_url
from pipeline.storage.settings import MiB, StorageSettings
from pipeline.telnyx import TelnyxClient
from tests.fixtures.emulators import Emulators, unique_bucket
from tests.fixtures.invariants import archived_rows, violations

WINDOW = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) - timedelta(hours=24))
FAST = dict(requests_per_second=1000.0, max_concurrency=16, backoff_base=0.01, backoff_max=0.1)


async def run(
    sandbox: SandboxServer,
    storage: StorageSettings,
    options: ArchiveOptions | None = None,
    on_stage: Callable[[str], None] | None = None,
) -> RunReport:
    async with TelnyxClient(sandbox.config.api_key, sandbox.base_url, **FAST) as client:
        return await archive(
            WINDOW,
            client=client,
            storage=storage,
            options=options or ArchiveOptions(),
            on_stage=on_stage,
        )


def at_stage(stage: str, n: int, action: Callable[[], None]) -> Callable[[str], None]:
    """A stage hook that runs `action` once, the n-th time the run reaches `stage`."""
    seen = {"count": 0}

    def hook(current: str) -> None:
        if current == stage:
            seen["count"] += 1
            if seen["count"] == n:
                action()

    return hook


# --- an upload cut midway ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["s3", "gcs", "azure", "local"])
async def test_an_upload_cut_midway_leaves_no_visible_object_and_the_recording_in_telnyx(
    kind: str, emulators: Emulators, tmp_path: Path
) -> None:
    # 6 MiB of audio with a 1 MiB threshold: every cut download had begun a multipart upload
    # (S3), a resumable session (GCS) or staged blocks (Azure) before it broke.
    settings = emulators.settings(None if kind == "local" else kind, multipart_threshold=MiB)
    config: dict[str, Any] = {}
    if kind == "local":
        (tmp_path / "archive").mkdir()
        settings = StorageSettings(
            default_destination=(tmp_path / "archive").as_uri(), multipart_threshold=MiB
        )
        backend: Backend = backend_for_url(settings.default_destination or "", settings)
    else:
        credential = emulators.credential(kind)
        config["credentials"] = {"#0": credential.to_api()}
        backend = emulators.backend(kind, credential.bucket, create=False, settings=settings)
    sandbox_config = SandboxConfig(
        recordings=2, seed=4, connections=1, audio_bytes=6 * MiB, fault_truncate=1.0, **config
    )
    async with SandboxServer(sandbox_config) as sandbox:
        report = await run(sandbox, settings, ArchiveOptions(commit_every=1))
        assert report.recordings_failed == 2 and report.recordings_deleted == 0
        assert len(sandbox.state.recordings) == 2, "both stay in Telnyx"
        for rid in sandbox.state.recordings:
            assert any(rid in e for e in report.errors), f"{rid} is not reported: {report.errors}"
    assert await backend.list("audio/") == [], "no partial audio object is visible"
    assert await backend.list("recordings/") == []
    if kind == "s3":
        uploads = emulators.s3_client().list_multipart_uploads(Bucket=backend.bucket)
        assert not uploads.get("Uploads"), "every multipart upload was aborted"
    if kind == "local":
        assert not [
            p for p in (tmp_path / "archive").rglob("*") if p.is_file() and "audio" in p.parts
        ]
        assert not list((tmp_path / "archive").rglob("*.partial")), "no temporary file is left"
    await backend.close()


# --- a destination that disappears or turns read-only -----------------------------------------


@pytest.fixture
def immutable() -> Iterator[Callable[[Path], None]]:
    """make(path): nothing can be created, changed or removed under path, root included."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not available")
    frozen: list[Path] = []

    def make(path: Path) -> None:
        subprocess.run(["chattr", "-R", "+i", str(path)], check=True, capture_output=True)
        frozen.append(path)

    probe = Path(os.environ.get("TMPDIR", "/tmp")) / f"chattr-probe-{os.getpid()}"
    probe.mkdir(exist_ok=True)
    try:
        subprocess.run(["chattr", "+i", str(probe)], check=True, capture_output=True)
        subprocess.run(["chattr", "-i", str(probe)], check=True, capture_output=True)
    except subprocess.CalledProcessError:
        pytest.skip("this file system does not support chattr +i")
    finally:
        probe.rmdir()
    yield make
    for path in frozen:
        subprocess.run(["chattr", "-R", "-i", str(path)], check=False, capture_output=True)


def _config(**changes: Any) -> SandboxConfig:
    fields: dict[str, Any] = dict(
        recordings=24, seed=8, connections=2, audio_bytes=2048, in_progress_ratio=0.0
    )
    fields.update(changes)
    return SandboxConfig(**fields)


OPTIONS = ArchiveOptions(commit_every=4, concurrency=16)


@pytest.mark.parametrize("fault", ["moved away", "read-only"])
async def test_a_local_folder_that_goes_away_mid_run_keeps_the_rest_in_telnyx_with_an_error(
    fault: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    storage = StorageSettings(default_destination=root.as_uri())
    if fault == "read-only":
        freeze = request.getfixturevalue("immutable")
        action, problem = (lambda: freeze(root)), "permission denied"
    else:
        action, problem = (lambda: root.rename(tmp_path / "gone")), "folder does not exist"
    async with SandboxServer(_config(recordings=40)) as sandbox:
        report = await run(sandbox, storage, OPTIONS, on_stage=at_stage("deleted", 1, action))
        left = set(sandbox.state.recordings)
        assert 0 < len(left) < 40, "some were archived before, the rest stayed"
        assert report.recordings_failed >= len(left)
        assert any(problem in e for e in report.errors), report.errors[:5]
        assert all("\n" not in e for e in report.errors)

        # Put the folder back as it was; what was archived before the fault is whole.
        if fault == "read-only":
            await asyncio.to_thread(subprocess.run, ["chattr", "-R", "-i", str(root)], check=True)
        else:
            (tmp_path / "gone").rename(root)
        local = LocalBackend(root=root, settings=StorageSettings())
        assert await violations(sandbox, [local]) == []
        again = await run(sandbox, storage, OPTIONS)
        assert again.ok, again.errors[:5]
        assert not sandbox.state.recordings, "a rerun finishes the job"
        assert await violations(sandbox, [local]) == []


async def test_an_s3_bucket_deleted_mid_run_costs_no_recording_and_is_named_in_the_errors(
    emulators: Emulators, tmp_path: Path
) -> None:
    s3 = emulators.s3_client()
    bucket = unique_bucket("vanish")
    s3.create_bucket(Bucket=bucket)
    (tmp_path / "other").mkdir()
    settings = emulators.settings("s3", default_destination=(tmp_path / "other").as_uri())
    credential = emulators.credential("s3", bucket, create=False)
    archived_before: set[str] = set()

    async with SandboxServer(_config(credentials={"#0": credential.to_api()})) as sandbox:
        conn = sandbox.state.connection_ids[0]
        everything = set(sandbox.state.recordings)
        on_s3 = {k for k, r in sandbox.state.recordings.items() if r["connection_id"] == conn}

        def delete_bucket() -> None:
            # What had rows when the bucket went: only those may ever leave Telnyx.
            listed = s3.list_objects_v2(Bucket=bucket, Prefix="telnyx-archive/recordings/")
            if listed.get("Contents"):
                import pyarrow.parquet as pq

                for obj in listed["Contents"]:
                    body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                    archived_before.update(pq.read_table(pa_buffer(body)).column("id").to_pylist())
            for obj in s3.list_objects_v2(Bucket=bucket).get("Contents", []):
                s3.delete_object(Bucket=bucket, Key=obj["Key"])
            s3.delete_bucket(Bucket=bucket)

        report = await run(
            sandbox, settings, OPTIONS, on_stage=at_stage("stored", 8, delete_bucket)
        )
        deleted_on_s3 = on_s3 & sandbox.state.deleted_recording_ids
        assert deleted_on_s3 <= archived_before, "nothing deleted that lost its archive"
        assert on_s3 - archived_before <= set(sandbox.state.recordings), "the rest stayed"
        assert any("bucket does not exist" in e for e in report.errors), report.errors[:5]
        others = everything - on_s3
        assert not others & set(sandbox.state.recordings), "other connections went on"
        local = LocalBackend(root=tmp_path / "other", settings=StorageSettings())
        rows, _ = await archived_rows([local])
        assert {r["id"] for r in rows} == others


def pa_buffer(data: bytes) -> Any:
    import pyarrow as pa

    return pa.BufferReader(data)


# --- a Parquet write that fails ------------------------------------------------------------------


@pytest.mark.parametrize("failure", ["write raises", "not readable back"])
async def test_a_failed_parquet_write_deletes_nothing_of_its_batch(
    failure: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "archive"
    root.mkdir()
    storage = StorageSettings(default_destination=root.as_uri())
    real_write, real_stat = LocalBackend.write_small, LocalBackend.stat
    state = {"recordings_files": 0, "broken": None}

    async def write_small(self: LocalBackend, key: str, data: bytes, *, content_type: str) -> Any:
        if key.startswith("recordings/"):
            state["recordings_files"] += 1
            if state["recordings_files"] == 2:  # the second batch's recording rows
                state["broken"] = key
                if failure == "write raises":
                    raise StorageError(f"local folder {str(root)!r}: simulated write failure")
        return await real_write(self, key, data, content_type=content_type)

    async def stat(self: LocalBackend, key: str) -> Any:
        if failure == "not readable back" and key == state["broken"]:
            return None
        return await real_stat(self, key)

    monkeypatch.setattr(LocalBackend, "write_small", write_small)
    monkeypatch.setattr(LocalBackend, "stat", stat)
    options = ArchiveOptions(commit_every=5, concurrency=1)
    async with SandboxServer(_config(recordings=15, connections=1)) as sandbox:
        report = await run(sandbox, storage, options)
        left = set(sandbox.state.recordings)
        unwritten = [e for e in report.errors if "metadata not written" in e]
        named = {e.split()[1].rstrip(":") for e in unwritten}
        assert left and left == named, "exactly the failed batch stays, each one named"
        local = LocalBackend(root=root, settings=StorageSettings())
        assert await violations(sandbox, [local]) == []

        monkeypatch.undo()
        again = await run(sandbox, storage, options)
        assert again.ok and not sandbox.state.recordings
        assert await violations(sandbox, [local]) == [], "exactly once after the rerun"
