"""The long-lived scheduler: one archive run per cron firing, never two at once.

APScheduler 3's AsyncIOScheduler runs the job on our event loop. `max_instances=1` skips a
firing while a run is still going (APScheduler logs it and emits EVENT_JOB_MAX_INSTANCES);
`coalesce=True` turns a backlog of missed firings into one run; `misfire_grace_time` lets a
run start late (after a restart or a long previous run) instead of being dropped.

Shutdown is two-stage. The first SIGTERM/SIGINT asks the current run to stop after its current
slice and prevents new runs; the process exits once the run returns. A second signal cancels
the run at once. Both are safe: a recording is deleted from Telnyx only after its audio and its
metadata row are durably stored, so an interrupted run leaves only recordings that the next run
archives (and deduplicates against the ledger) again.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, JobEvent
from apscheduler.triggers.cron import CronTrigger

from pipeline.config import one_line

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

log = logging.getLogger(__name__)

JOB_ID = "telnyx-archiver-nightly"
T = TypeVar("T")


class RunInterrupted(Exception):
    """The run was cancelled by a shutdown before it could finish."""


class Shutdown:
    """First request: finish the current slice, start nothing new. Second: cancel now."""

    def __init__(self) -> None:
        self.requested = asyncio.Event()
        self.forced = asyncio.Event()

    def request(self, signame: str = "request") -> None:
        if self.requested.is_set():
            log.warning("second %s: cancelling the current run now", signame)
            self.forced.set()
        else:
            log.info("%s: stopping after the current slice (send again to stop at once)", signame)
            self.requested.set()

    def install(self, loop: asyncio.AbstractEventLoop | None = None) -> Callable[[], None]:
        """Route SIGTERM and SIGINT here; returns a function that removes the handlers."""
        loop = loop or asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self.request, sig.name)
                installed.append(sig)
            except (
                NotImplementedError,
                RuntimeError,
                ValueError,
            ):  # not the main thread, or Windows
                pass

        def remove() -> None:
            for sig in installed:
                loop.remove_signal_handler(sig)

        return remove


def accepts_stop(fn: Callable[..., Any]) -> bool:
    """Whether fn takes a `stop` event keyword (as archive() does)."""
    try:
        return "stop" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


async def run_stoppable(
    fn: Callable[..., Awaitable[T]], *args: Any, shutdown: Shutdown, **kwargs: Any
) -> T:
    """Await fn(*args, **kwargs) under a Shutdown.

    If fn takes a stop event it is passed `shutdown.requested` (stop after the current slice)
    and cancelled only on a forced shutdown; otherwise it is cancelled on the first request.
    """
    stop_aware = accepts_stop(fn)
    if stop_aware:
        kwargs["stop"] = shutdown.requested
    cancel_on = shutdown.forced if stop_aware else shutdown.requested
    task = asyncio.ensure_future(fn(*args, **kwargs))
    waiter = asyncio.ensure_future(cancel_on.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            # Let the run unwind (close sessions, finish its cleanup) before we go on.
            await asyncio.wait({task})
    if task.cancelled():
        raise RunInterrupted("the run was interrupted by a shutdown before it finished")
    return task.result()


class NightlyScheduler:
    """Runs `job(shutdown)` on a cron schedule, one at a time, until shut down."""

    def __init__(
        self,
        job: Callable[[Shutdown], Awaitable[Any]],
        *,
        cron: str = "0 2 * * *",
        timezone: str = "UTC",
        misfire_grace_time: timedelta = timedelta(hours=1),
    ) -> None:
        self.job = job
        self.trigger = CronTrigger.from_crontab(cron, timezone=timezone)
        self.timezone = timezone
        self.misfire_grace_time = misfire_grace_time
        self.shutdown = Shutdown()
        self.skipped = 0  # firings skipped because a run was still going
        self.scheduler: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[Any]] = set()

    async def _fire(self) -> None:
        if self.shutdown.requested.is_set():
            return
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            await self.job(self.shutdown)
        except Exception as exc:  # a failed run must not end the scheduler
            log.error("scheduled run failed: %s", one_line(exc))
            log.debug("scheduled run failure", exc_info=True)
        finally:
            self._running.discard(task)

    def _on_max_instances(self, event: JobEvent) -> None:
        self.skipped += 1
        log.warning("skipped a scheduled run: the previous run is still going")

    def start(self) -> AsyncIOScheduler:
        """Start the scheduler on the running loop (call from inside it)."""
        # Imported here: it costs ~50 ms, which every other command (and --help) need not pay.
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        scheduler = AsyncIOScheduler(timezone=self.timezone)
        scheduler.add_listener(self._on_max_instances, EVENT_JOB_MAX_INSTANCES)
        scheduler.add_job(
            self._fire,
            self.trigger,
            id=JOB_ID,
            name="archive recordings",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=int(self.misfire_grace_time.total_seconds()) or None,
            replace_existing=True,
        )
        scheduler.start()
        self.scheduler = scheduler
        job = scheduler.get_job(JOB_ID)
        if job is not None:
            log.info(
                "scheduler started: %s (%s); next run at %s",
                " ".join(str(self.trigger).split()),
                self.timezone,
                job.next_run_time.isoformat() if job.next_run_time else "never",
            )
        return scheduler

    def run_now(self) -> None:
        """Make the job fire as soon as possible (tests, and `schedule --now`)."""
        assert self.scheduler is not None
        self.scheduler.get_job(JOB_ID).modify(next_run_time=datetime.now(UTC))  # type: ignore[union-attr]

    async def stop(self) -> None:
        """No new runs; wait for the current one (which was asked to stop) to return."""
        running = self.scheduler is not None and self.scheduler.running
        if running:
            self.scheduler.pause()  # type: ignore[union-attr]
        if self._running:
            log.info("waiting for the current run to stop")
            await asyncio.gather(*self._running, return_exceptions=True)
        # Only now: the executor's shutdown cancels whatever job is still pending.
        if running:
            self.scheduler.shutdown(wait=False)  # type: ignore[union-attr]

    async def serve(self, *, install_signals: bool = True, run_now: bool = False) -> None:
        """Run until SIGTERM/SIGINT (or shutdown.request()), then stop cleanly."""
        remove = self.shutdown.install() if install_signals else (lambda: None)
        try:
            self.start()
            if run_now:
                self.run_now()
            await self.shutdown.requested.wait()
            await self.stop()
        finally:
            remove()
        log.info("scheduler stopped")
