"""`telnyx-archiver sandbox`: serve the simulated Telnyx API until Ctrl-C."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import click

from pipeline.sandbox.config import SandboxConfig, load_credentials
from pipeline.sandbox.server import serve

_SHARE = click.FloatRange(0.0, 1.0)


@click.command("sandbox")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8020, show_default=True, type=int, help="0 picks a free port.")
@click.option("--recordings", default=300, show_default=True, type=click.IntRange(min=0))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--api-key", default="sandbox-key", show_default=True, envvar="SANDBOX_API_KEY")
@click.option("--connections", default=4, show_default=True, type=click.IntRange(min=1))
@click.option("--days", default=7, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--anchor",
    type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Recordings are created in [anchor - days - 1 day, anchor - 1 day); default today 00:00 UTC.",
)
@click.option("--audio-bytes", default=64 * 1024, show_default=True, type=click.IntRange(min=0))
@click.option("--link-ttl", default=600.0, show_default=True, type=float, help="Seconds.")
@click.option(
    "--transcription-pagination",
    type=click.Choice(["cursor", "page"]),
    default="cursor",
    show_default=True,
)
@click.option("--transcription-ratio", default=0.7, show_default=True, type=_SHARE)
@click.option("--in-progress-ratio", default=0.15, show_default=True, type=_SHARE)
@click.option(
    "--credentials",
    "credentials_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='JSON {connection_id: CustomStorageConfiguration}; "#0" names the first connection.',
)
@click.option("--rate-limit", type=float, help="Requests per second (token bucket); off if unset.")
@click.option("--rate-burst", default=10, show_default=True, type=click.IntRange(min=1))
@click.option("--retry-after-header/--no-retry-after-header", default=False, show_default=True)
@click.option("--rate-reset-fractional/--rate-reset-integer", default=False, show_default=True)
@click.option("--latency", default=0.0, show_default=True, type=float, help="Seconds per API call.")
@click.option("--audio-latency", default=0.0, show_default=True, type=float)
@click.option("--fault-seed", default=0, show_default=True, type=int)
@click.option("--fault-5xx", default=0.0, show_default=True, type=_SHARE)
@click.option("--fault-reset", default=0.0, show_default=True, type=_SHARE)
@click.option("--fault-truncate", default=0.0, show_default=True, type=_SHARE)
@click.option("--fault-expire", default=0.0, show_default=True, type=_SHARE)
@click.option("--fault-partial-delete", default=0.0, show_default=True, type=_SHARE)
def sandbox_command(
    host: str,
    port: int,
    credentials_file: Path | None,
    anchor: datetime | None,
    **fields: object,
) -> None:
    """Serve a simulated Telnyx API (recordings, transcriptions, custom storage) on HOST:PORT."""
    credentials = load_credentials(credentials_file) if credentials_file else {}
    if anchor is not None and anchor.tzinfo is None:
        anchor = anchor.replace(tzinfo=UTC)
    try:
        config = SandboxConfig(credentials=credentials, anchor=anchor, **fields)  # type: ignore[arg-type]
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    asyncio.run(serve(config, host, port))
