"""Analysts read both datasets with DuckDB and pandas, call_date typed as a date."""

from __future__ import annotations

import datetime as dt
from datetime import UTC, datetime, timedelta

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds
import pytest

from pipeline.archive.options import ArchiveOptions, Window
from pipeline.archive.run import archive
from pipeline.sandbox import SandboxConfig, SandboxServer
from pipeline.storage.settings import StorageSettings
from pipeline.telnyx import TelnyxClient


@pytest.fixture(scope="module")
def archive_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")

    async def build() -> None:
        config = SandboxConfig(recordings=50, seed=13, audio_bytes=1024)
        window = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) - timedelta(hours=24))
        async with (
            SandboxServer(config) as sandbox,
            TelnyxClient(config.api_key, sandbox.base_url) as client,
        ):
            await archive(
                window,
                client=client,
                storage=StorageSettings(default_destination=root.as_uri()),
                options=ArchiveOptions(),
            )

    import asyncio

    asyncio.run(build())
    return root


@pytest.mark.parametrize("dataset", ["recordings", "transcriptions"])
def test_duckdb_reads_each_dataset_with_call_date_as_a_date(archive_root, dataset):
    rows = duckdb.sql(
        f"SELECT typeof(call_date), typeof(created_at), count(*) "
        f"FROM read_parquet('{archive_root}/{dataset}/**/*.parquet', hive_partitioning = true) GROUP BY ALL"
    ).fetchall()
    assert rows and all(r[0] == "DATE" and r[1] == "TIMESTAMP WITH TIME ZONE" for r in rows)
    assert sum(r[2] for r in rows) > 0


@pytest.mark.parametrize("dataset", ["recordings", "transcriptions"])
def test_pandas_reads_each_dataset_with_call_date_as_a_date(archive_root, dataset):
    partitioning = ds.partitioning(pa.schema([("call_date", pa.date32())]), flavor="hive")
    frame = (
        ds.dataset(archive_root / dataset, format="parquet", partitioning=partitioning)
        .to_table()
        .to_pandas()
    )
    assert len(frame) > 0
    assert isinstance(frame["call_date"].iloc[0], dt.date)
    assert str(frame["created_at"].dtype).startswith("datetime64[us, UTC]")
    if dataset == "recordings":
        assert frame["duration_millis"].dtype == "int64"
        assert (frame["created_at"].dt.date <= frame["call_date"] + dt.timedelta(days=1)).all()


def test_a_recording_row_joins_its_transcription_rows(archive_root):
    joined = duckdb.sql(
        f"SELECT count(*) FROM read_parquet('{archive_root}/recordings/**/*.parquet', hive_partitioning = true) r "
        f"JOIN read_parquet('{archive_root}/transcriptions/**/*.parquet', hive_partitioning = true) t "
        f"ON t.recording_id = r.id AND t.call_date = r.call_date"
    ).fetchall()[0][0]
    assert joined > 0
