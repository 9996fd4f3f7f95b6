"""The `telnyx-archiver` command line.

Exit codes: 0 all good; 1 some recordings failed (they stay in Telnyx) or the run was
interrupted; 2 usage or config error; 3 authentication or destination preflight failure.
Errors are one line on stderr, with a traceback only at --log-level debug, and never a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click

from pipeline import __version__
from pipeline.archive.options import Window
from pipeline.archive.slices import nightly_window
from pipeline.config import (
    CONFIG_ENV,
    LOG_LEVELS,
    ConfigError,
    Settings,
    load_settings,
    normalize_destination,
    one_line,
    parse_duration,
    parse_when,
)
from pipeline.logs import redact, setup_logging, stderr_console
from pipeline.progress import LogProgress, progress_for, summary_fields, summary_lines
from pipeline.schedule import RunInterrupted, Shutdown, run_stoppable

log = logging.getLogger("pipeline.cli")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3


# --- parameter types -----------------------------------------------------------------------


class ParsedType(click.ParamType):
    """A flag read by the same parser as its config key; the parser's ValueError is a usage error."""

    def __init__(self, name: str, parse: Callable[[Any], Any]) -> None:
        self.name = name
        self.parse = parse

    def convert(self, value: Any, param: Any, ctx: Any) -> Any:
        try:
            return self.parse(value)  # each parser passes an already-parsed value through
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DURATION = ParsedType("DURATION", parse_duration)
WHEN = ParsedType("DATE", parse_when)
DESTINATION = ParsedType("URL", normalize_destination)


# --- global state and error handling -------------------------------------------------------


@dataclass
class Globals:
    config_path: str | None
    log_format: str | None
    log_level: str | None
    verbose: bool
    secrets: tuple[str, ...] = ()
    debug: bool = False
    json_logs: bool = False


def _globals() -> Globals:
    return click.get_current_context().find_object(Globals) or Globals(None, None, None, False)


def _configure_logging(g: Globals, settings: Settings | None) -> None:
    fmt = g.log_format or (settings.logging.format if settings else "text")
    level = g.log_level or ("DEBUG" if g.verbose else None)
    level = level or (settings.logging.level if settings else "INFO")
    g.debug = level.upper() == "DEBUG"
    g.json_logs = fmt == "json"
    setup_logging(fmt, level, secrets=g.secrets, console=stderr_console())


def _fail(code: int, message: str, exc: BaseException | None = None) -> None:
    g = _globals()
    if g.debug and exc is not None:
        click.echo(redact("".join(traceback.format_exception(exc)), g.secrets).rstrip(), err=True)
    click.echo(f"error: {' '.join(redact(message, g.secrets).split())}", err=True)
    raise click.exceptions.Exit(code)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Map exceptions to exit codes and one-line messages."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except ConfigError as exc:
            _fail(EXIT_USAGE, one_line(exc), exc)
        except RunInterrupted as exc:
            _fail(EXIT_FAILED, one_line(exc), exc)
        except KeyboardInterrupt as exc:
            _fail(EXIT_FAILED, "interrupted", exc)
        except Exception as exc:
            _fail(*_classify(exc), exc)

    return wrapper


def _classify(exc: Exception) -> tuple[int, str]:
    """The exit code and message for an error no command handled."""
    from pipeline.storage.base import PreflightError
    from pipeline.telnyx.errors import AuthenticationError

    if isinstance(exc, AuthenticationError):
        return EXIT_AUTH, f"Telnyx rejected the API key ({one_line(exc)}); check TELNYX_API_KEY"
    if isinstance(exc, PreflightError):
        return EXIT_AUTH, f"destination preflight failed: {one_line(exc)}"
    return EXIT_FAILED, f"{type(exc).__name__}: {one_line(exc)}"


def load(overrides: dict[str, Any] | None = None, *, need_api_key: bool = False) -> Settings:
    """Settings for the current command (file < env < flags), with logging configured."""
    g = _globals()
    _configure_logging(g, None)
    settings = load_settings(g.config_path, overrides=overrides)
    key = settings.telnyx.api_key
    g.secrets = (key.reveal(),) if key else ()
    _configure_logging(g, settings)
    if need_api_key:
        settings.telnyx.require_api_key()
    if settings.source:
        log.debug("read config from %s", settings.source)
    return settings


# --- the archive, the client and the run ---------------------------------------------------


def archive_function() -> Callable[..., Any]:
    from pipeline.archive.run import archive

    return archive


def telnyx_client(
    settings: Settings, *, api_key: str | None = None, base_url: str | None = None
) -> Any:
    from pipeline.telnyx import TelnyxClient

    t = settings.telnyx
    return TelnyxClient(
        api_key if api_key is not None else t.require_api_key().reveal(),
        base_url if base_url is not None else t.base_url,
        requests_per_second=t.requests_per_second,
        max_concurrency=t.max_concurrency,
        max_attempts=t.max_attempts,
        timeout=t.timeout,
        page_concurrency=t.page_concurrency,
    )


async def archive_once(
    settings: Settings,
    window: Any,
    options: Any,
    *,
    progress: Any,
    shutdown: Shutdown,
    client: Any = None,
) -> Any:
    """One archive() call under a client (its own unless given), honouring shutdown.

    Fills report.api_calls from the client if the archive left it empty.
    """
    if client is None:
        async with telnyx_client(settings) as owned:
            return await archive_once(
                settings, window, options, progress=progress, shutdown=shutdown, client=owned
            )
    report = await run_stoppable(
        archive_function(),
        window,
        client=client,
        storage=settings.storage,
        options=options,
        progress=progress,
        shutdown=shutdown,
    )
    if not report.api_calls:
        with contextlib.suppress(Exception):
            report.api_calls = dict(client.stats.snapshot())
    return report


async def _with_signals(coro_fn: Callable[[Shutdown], Any]) -> Any:
    shutdown = Shutdown()
    remove = shutdown.install()
    try:
        return await coro_fn(shutdown)
    finally:
        remove()


def _report_summary(report: Any, *, to_log: bool = False) -> None:
    g = _globals()
    level = logging.INFO if report.ok else logging.WARNING
    if g.json_logs:
        message = "run finished" if report.ok else "run finished with failures"
        log.log(level, message, extra=summary_fields(report))
    elif to_log:
        for line in summary_lines(report):
            log.log(level, "%s", line)
    else:
        for line in summary_lines(report):
            click.echo(line)


def _publish_metrics(settings: Settings, report: Any, metrics: Any = None) -> None:
    if not settings.metrics.enabled:
        return
    from pipeline.metrics import RunMetrics

    metrics = metrics or RunMetrics()
    metrics.observe(report)
    metrics.publish(settings.metrics)


@contextlib.contextmanager
def _progress() -> Iterator[Any]:
    g = _globals()
    console = stderr_console()
    with progress_for(console, live=console.is_terminal and not g.json_logs) as sink:
        yield sink


def _run_window(settings: Settings, window: Any, options: Any) -> int:
    log.info(
        "archiving recordings created in [%s, %s)%s",
        window.since.isoformat(),
        window.until.isoformat(),
        " (dry run)" if options.dry_run else "",
    )
    if not settings.storage.default_destination:
        log.warning(
            "no default destination: recordings of connections without a stored storage "
            "credential are left in Telnyx"
        )

    async def main(shutdown: Shutdown) -> tuple[Any, bool]:
        with _progress() as sink:
            report = await archive_once(settings, window, options, progress=sink, shutdown=shutdown)
        return report, shutdown.requested.is_set()

    report, stopped = asyncio.run(_with_signals(main))
    _report_summary(report)
    _publish_metrics(settings, report)
    if stopped and report.slices_done < report.slices_total:
        log.warning(
            "stopped on request after %d of %d slices; the next run continues",
            report.slices_done,
            report.slices_total,
        )
        return EXIT_FAILED
    return EXIT_OK if report.ok else EXIT_FAILED


# --- commands ------------------------------------------------------------------------------


def safety_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--dry-run",
            is_flag=True,
            default=None,
            help="List and plan only: write nothing, delete nothing.",
        ),
        click.option(
            "--keep-source",
            is_flag=True,
            default=None,
            help="Archive and verify, but never delete from Telnyx.",
        ),
        click.option(
            "--max-delete",
            type=click.IntRange(min=0),
            default=None,
            metavar="N",
            help="Delete at most N recordings from Telnyx in this run.",
        ),
        click.option(
            "--min-age",
            type=DURATION,
            default=None,
            help="Leave recordings younger than this (e.g. 24h, 90m, 2d). Default: 24h.",
        ),
        click.option(
            "--destination",
            type=DESTINATION,
            default=None,
            help="Default destination URL (file:///path, s3://, gs://, az://) for connections "
            "without a stored credential. Env: TELNYX_ARCHIVER_DESTINATION.",
        ),
        click.option(
            "--format",
            "audio_format",
            type=click.Choice(["mp3", "wav", "both"]),
            default=None,
            help="Audio format(s) to archive. Default: mp3.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _overrides(flags: dict[str, Any]) -> dict[str, Any]:
    return {
        "archive.dry_run": flags.get("dry_run"),
        "archive.keep_source": flags.get("keep_source"),
        "archive.max_delete": flags.get("max_delete"),
        "archive.min_age": flags.get("min_age"),
        "storage.default_destination": flags.get("destination"),
        "archive.formats": flags.get("audio_format"),
    }


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="telnyx-archiver")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    envvar=CONFIG_ENV,
    show_envvar=True,
    help="TOML config file (see config/archiver.example.toml).",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default=None,
    help="text (default) or json: one JSON object per line.",
)
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default=None,
    help="Default INFO. DEBUG also prints tracebacks.",
)
@click.option("-v", "--verbose", is_flag=True, help="Shorthand for --log-level DEBUG.")
@click.pass_context
def cli(
    ctx: click.Context,
    config_path: str | None,
    log_format: str | None,
    log_level: str | None,
    verbose: bool,
) -> None:
    """Archive Telnyx call recordings and transcriptions into your own bucket, verify them,
    then delete them from Telnyx.

    Start with `telnyx-archiver demo`: it runs the whole pipeline against a local simulated
    Telnyx API and writes the archive to ./archive-demo.

    Exit codes: 0 ok, 1 some recordings failed (they stay in Telnyx), 2 usage or config error,
    3 authentication or destination preflight failure.
    """
    ctx.obj = Globals(config_path, log_format, log_level.upper() if log_level else None, verbose)


@cli.command()
@safety_options
@handle_errors
def run(**flags: Any) -> None:
    """The nightly job: archive every recording created before now minus --min-age.

    Safe to rerun and to interrupt: a recording is deleted from Telnyx only after its audio
    was stored and read back, and its metadata row is durable.
    """
    settings = load(_overrides(flags), need_api_key=True)
    window = nightly_window(datetime.now(UTC), settings.archive.min_age, settings.archive.earliest)
    if window.since >= window.until:
        raise ConfigError(
            f"archive.earliest ({window.since.isoformat()}) is not before now minus min_age"
        )
    raise click.exceptions.Exit(_run_window(settings, window, settings.archive.options))


@cli.command()
@click.option(
    "--since",
    required=True,
    type=WHEN,
    help="Start (inclusive), ISO date or datetime; UTC if naive.",
)
@click.option(
    "--until", required=True, type=WHEN, help="End (exclusive), ISO date or datetime; UTC if naive."
)
@safety_options
@handle_errors
def backfill(since: datetime, until: datetime, **flags: Any) -> None:
    """Archive recordings created in [--since, --until), e.g. a year of history.

    Resumable: slices finished by an earlier backfill (checkpoints in archive.state_dir) are
    skipped. --until is capped at now minus --min-age.
    """
    if since >= until:
        raise click.UsageError(
            f"--since ({since.isoformat()}) must be before --until ({until.isoformat()})"
        )
    settings = load(_overrides(flags), need_api_key=True)
    cutoff = datetime.now(UTC) - settings.archive.min_age
    if until > cutoff:
        if since >= cutoff:
            raise click.UsageError(
                f"the whole window is younger than min_age ({settings.archive.min_age}); nothing to do"
            )
        log.warning("--until capped at %s (now minus min_age)", cutoff.isoformat())
        until = cutoff
    state_dir = settings.state_path()
    options = dataclasses.replace(settings.archive.options, state_dir=str(state_dir))
    raise click.exceptions.Exit(_run_window(settings, Window(since=since, until=until), options))


@cli.command()
@safety_options
@click.option("--now", "run_now", is_flag=True, help="Also start a run right away.")
@handle_errors
def schedule(run_now: bool, **flags: Any) -> None:
    """Stay running and archive on the cron schedule (schedule.cron, default 0 2 * * * UTC).

    One run at a time; a firing during a run is skipped. SIGTERM/SIGINT: the current run stops
    after its current slice and the process exits 0; a second signal cancels the run at once.
    """
    settings = load(_overrides(flags), need_api_key=True)
    from pipeline.metrics import RunMetrics
    from pipeline.schedule import NightlyScheduler

    metrics = RunMetrics()
    options = settings.archive.options

    async def job(shutdown: Shutdown) -> None:
        window = nightly_window(
            datetime.now(UTC), settings.archive.min_age, settings.archive.earliest
        )
        log.info("scheduled run: [%s, %s)", window.since.isoformat(), window.until.isoformat())
        report = await archive_once(
            settings, window, options, progress=LogProgress(), shutdown=shutdown
        )
        _report_summary(report, to_log=True)
        _publish_metrics(settings, report, metrics)

    s = settings.schedule
    scheduler = NightlyScheduler(
        job, cron=s.cron, timezone=s.timezone, misfire_grace_time=s.misfire_grace_time
    )
    asyncio.run(_preflight_then(settings, lambda: scheduler.serve(run_now=run_now)))


async def _preflight_then(settings: Settings, then: Callable[[], Any]) -> Any:
    """Fail at start-up (exit 3), not at 2 a.m., when the default destination is unusable."""
    url = settings.storage.default_destination
    if url:
        backend = await _backend(url, settings)
        try:
            await backend.preflight()
        finally:
            await backend.close()
        log.info("destination %s is writable", url)
    return await then()


async def _backend(url: str, settings: Settings) -> Any:
    from pipeline.storage.select import backend_for_url

    return backend_for_url(url, settings.storage)


@cli.command()
@click.option(
    "--destination",
    type=DESTINATION,
    default=None,
    help="The archive to check. Default: storage.default_destination.",
)
@handle_errors
def verify(destination: str | None) -> None:
    """Audit an archive: every row has its audio with the right size and hash, no duplicates.

    Exit 0 if the archive is consistent, 1 if not.
    """
    settings = load({"storage.default_destination": destination})
    url = settings.storage.default_destination
    if not url:
        raise click.UsageError("give --destination or set storage.default_destination")

    async def main() -> Any:
        from pipeline.archive.audit import audit

        backend = await _backend(url, settings)
        try:
            return await audit(backend)
        finally:
            await backend.close()

    report = asyncio.run(main())
    problems = ("missing_audio", "bad_audio", "orphan_audio", "duplicate_rows")
    counts = {"rows": report.rows, **{name: len(getattr(report, name)) for name in problems}}
    if _globals().json_logs:
        log.info("audit finished", extra={"destination": url, "ok": report.ok, **counts})
    else:
        click.echo(f"archive {url}: {'OK' if report.ok else 'PROBLEMS FOUND'}")
        for name, n in counts.items():
            click.echo(f"  {name.replace('_', ' '):<15} {n}")
        for name in problems:
            for item in list(getattr(report, name))[:10]:
                click.echo(f"  {name.replace('_', ' ')}: {item}")
    raise click.exceptions.Exit(EXIT_OK if report.ok else EXIT_FAILED)


@cli.command()
@click.option("--recordings", type=click.IntRange(min=1), default=300, show_default=True)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False),
    default="archive-demo",
    show_default=True,
    help="Local folder the archive is written to.",
)
@click.option(
    "--format",
    "audio_format",
    type=click.Choice(["mp3", "wav", "both"]),
    default="mp3",
    show_default=True,
)
@click.option("--seed", type=int, default=1, show_default=True, help="Sandbox data seed.")
@handle_errors
def demo(recordings: int, directory: str, audio_format: str, seed: int) -> None:
    """Run the whole pipeline against a local simulated Telnyx API; no account needed.

    Starts the sandbox in-process, archives its recordings older than 24 h into --dir
    (deleting them from the sandbox), then shows how to query the result with DuckDB.
    """
    settings = load({"archive.formats": audio_format})
    report = asyncio.run(
        _with_signals(
            lambda shutdown: run_demo(recordings, directory, settings, shutdown, seed=seed)
        )
    )
    _report_summary(report)
    root = find_dataset_root(Path(directory), "recordings")
    if root is not None and not _globals().json_logs:
        shown = _shown_path(root)
        glob = f"{shown}/recordings/**/*.parquet"
        query = (
            "SELECT call_date, count(*) AS recordings, round(sum(duration_millis)/60000.0, 1) AS minutes "
            f"FROM read_parquet('{glob}', hive_partitioning=true) GROUP BY 1 ORDER BY 1"
        )
        click.echo("")
        click.echo(f"archive written to {root}")
        click.echo("try:")
        python = os.path.relpath(sys.executable) if sys.executable else "python"
        click.echo(f'  {python} -c "import duckdb; duckdb.sql(\\"{query}\\").show()"')
        click.echo(
            f"  the repository's notebooks/archive_analysis.ipynb, with ARCHIVE_ROOT={shown}"
        )
    raise click.exceptions.Exit(EXIT_OK if report.ok else EXIT_FAILED)


async def run_demo(
    recordings: int,
    directory: str | Path,
    settings: Settings | None = None,
    shutdown: Shutdown | None = None,
    *,
    seed: int = 1,
    progress: Any = None,
) -> Any:
    """The demo, callable from tests and the notebook: sandbox in-process, archive to directory."""
    from pipeline.sandbox import SandboxConfig, SandboxServer

    settings = settings or load_settings(None, env={})
    shutdown = shutdown or Shutdown()
    target = await asyncio.to_thread(_prepare_dir, Path(directory))
    storage = dataclasses.replace(settings.storage, default_destination=target.as_uri())
    # The in-process sandbox has no rate limit; the 20/s default is for the real API.
    telnyx = dataclasses.replace(
        settings.telnyx, requests_per_second=max(settings.telnyx.requests_per_second, 200.0)
    )
    settings = dataclasses.replace(settings, storage=storage, telnyx=telnyx)
    config = SandboxConfig(recordings=recordings, seed=seed)
    now = datetime.now(UTC)
    window = Window(since=settings.archive.earliest, until=now - timedelta(hours=24))
    async with SandboxServer(config) as sandbox:
        log.info("sandbox Telnyx API at %s with %d recordings", sandbox.base_url, recordings)
        async with telnyx_client(
            settings, api_key=config.api_key, base_url=sandbox.base_url
        ) as client:
            with contextlib.nullcontext(progress) if progress is not None else _progress() as sink:
                return await archive_once(
                    settings,
                    window,
                    settings.archive.options,
                    progress=sink,
                    shutdown=shutdown,
                    client=client,
                )


def _prepare_dir(directory: Path) -> Path:
    target = directory.expanduser().resolve()
    target.mkdir(parents=True, exist_ok=True)
    return target


def find_dataset_root(directory: Path, dataset: str) -> Path | None:
    """The folder holding <dataset>/call_date=... under directory (the layout decides the depth)."""
    for part in sorted(directory.rglob(f"{dataset}/call_date=*")):
        return part.parent.parent
    return None


def _shown_path(root: Path) -> str:
    try:
        return str(root.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(root.resolve())


def _register_sandbox() -> None:
    try:
        from pipeline.sandbox.command import sandbox_command
    except Exception as exc:  # the sandbox is optional for the rest of the CLI
        logging.getLogger(__name__).debug("sandbox command unavailable: %s", exc)
        return
    cli.add_command(sandbox_command, "sandbox")


_register_sandbox()


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="telnyx-archiver")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
