"""The scheduler: the cron job fires, never overlaps itself, and shuts down cleanly."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES

from pipeline.schedule import JOB_ID, NightlyScheduler, RunInterrupted, Shutdown, run_stoppable

WAIT = 10  # seconds: an upper bound for events that normally take milliseconds


class Probe:
    """A job that records how many runs overlap and waits for a gate before returning."""

    def __init__(self) -> None:
        self.calls = 0
        self.running = 0
        self.max_running = 0
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.stopped_by_request = False

    async def __call__(self, shutdown: Shutdown) -> None:
        self.calls += 1
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.started.set()
        try:
            gate = asyncio.ensure_future(self.gate.wait())
            stop = asyncio.ensure_future(shutdown.requested.wait())
            await asyncio.wait({gate, stop}, return_when=asyncio.FIRST_COMPLETED)
            gate.cancel()
            stop.cancel()
            self.stopped_by_request = shutdown.requested.is_set()
        finally:
            self.running -= 1


async def test_the_cron_job_fires_and_then_waits_for_the_next_cron_time() -> None:
    probe = Probe()
    probe.gate.set()
    nightly = NightlyScheduler(probe, cron="0 2 * * *", timezone="UTC")
    scheduler = nightly.start()
    try:
        job = scheduler.get_job(JOB_ID)
        assert job.next_run_time.hour == 2 and job.next_run_time.minute == 0
        nightly.run_now()
        await asyncio.wait_for(probe.started.wait(), WAIT)
        assert probe.calls == 1
        await asyncio.sleep(0)
        assert scheduler.get_job(JOB_ID).next_run_time.hour == 2  # back on the cron schedule
    finally:
        await nightly.stop()


async def test_the_job_is_registered_with_one_instance_coalescing_and_a_grace_time() -> None:
    nightly = NightlyScheduler(
        Probe(), cron="30 3 * * 1-5", timezone="Europe/Paris", misfire_grace_time=timedelta(hours=2)
    )
    scheduler = nightly.start()
    try:
        job = scheduler.get_job(JOB_ID)
        assert job.max_instances == 1
        assert job.coalesce is True
        assert job.misfire_grace_time == 7200
        assert str(job.trigger.timezone) == "Europe/Paris"
        assert job.next_run_time.hour == 3 and job.next_run_time.minute == 30
    finally:
        await nightly.stop()


async def test_a_firing_during_a_run_is_skipped_not_overlapped() -> None:
    probe = Probe()
    nightly = NightlyScheduler(probe)
    nightly.start()
    skipped = asyncio.Event()
    nightly.scheduler.add_listener(lambda event: skipped.set(), EVENT_JOB_MAX_INSTANCES)
    try:
        nightly.run_now()
        await asyncio.wait_for(probe.started.wait(), WAIT)
        nightly.run_now()  # the second firing, while the first run is still going
        await asyncio.wait_for(skipped.wait(), WAIT)
        probe.gate.set()
        await asyncio.sleep(0)
    finally:
        await nightly.stop()
    assert probe.calls == 1
    assert probe.max_running == 1
    assert nightly.skipped == 1


async def test_a_shutdown_request_lets_the_current_run_finish_its_slice() -> None:
    probe = Probe()
    nightly = NightlyScheduler(probe)
    serving = asyncio.create_task(nightly.serve(install_signals=False, run_now=True))
    await asyncio.wait_for(probe.started.wait(), WAIT)
    nightly.shutdown.request("test")
    await asyncio.wait_for(serving, WAIT)
    assert probe.stopped_by_request  # the run saw the request and returned by itself
    assert probe.running == 0
    assert not nightly.scheduler.running


async def test_sigterm_stops_the_scheduler_cleanly() -> None:
    probe = Probe()
    nightly = NightlyScheduler(probe)
    serving = asyncio.create_task(nightly.serve(install_signals=True, run_now=True))
    await asyncio.wait_for(probe.started.wait(), WAIT)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(serving, WAIT)
    assert probe.stopped_by_request
    assert not nightly.scheduler.running


async def test_a_failing_run_does_not_end_the_scheduler(caplog: pytest.LogCaptureFixture) -> None:
    calls = []

    async def failing(shutdown: Shutdown) -> None:
        calls.append(1)
        raise RuntimeError("storage down")

    nightly = NightlyScheduler(failing)
    scheduler = nightly.start()
    try:
        nightly.run_now()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if "scheduled run failed: storage down" in caplog.text:
                break
        assert scheduler.running
        assert scheduler.get_job(JOB_ID) is not None
    finally:
        await nightly.stop()
    assert calls == [1]
    assert "scheduled run failed: storage down" in caplog.text


async def test_a_stop_aware_run_gets_the_request_event_and_is_not_cancelled() -> None:
    shutdown = Shutdown()
    seen = {}

    async def archive(window: str, *, stop: asyncio.Event) -> str:
        seen["stop"] = stop
        await stop.wait()
        return f"{window}: stopped after the slice"

    task = asyncio.create_task(run_stoppable(archive, "w", shutdown=shutdown))
    await asyncio.sleep(0)
    shutdown.request()
    assert await asyncio.wait_for(task, WAIT) == "w: stopped after the slice"
    assert seen["stop"] is shutdown.requested


async def test_a_second_request_cancels_a_stop_aware_run() -> None:
    shutdown = Shutdown()

    async def stubborn(*, stop: asyncio.Event) -> None:
        await asyncio.Event().wait()

    task = asyncio.create_task(run_stoppable(stubborn, shutdown=shutdown))
    await asyncio.sleep(0)
    shutdown.request()
    shutdown.request()
    with pytest.raises(RunInterrupted):
        await asyncio.wait_for(task, WAIT)


async def test_a_run_without_a_stop_parameter_is_cancelled_on_the_first_request() -> None:
    shutdown = Shutdown()
    cleaned_up = asyncio.Event()

    async def legacy() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned_up.set()

    task = asyncio.create_task(run_stoppable(legacy, shutdown=shutdown))
    await asyncio.sleep(0)
    shutdown.request()
    with pytest.raises(RunInterrupted):
        await asyncio.wait_for(task, WAIT)
    assert cleaned_up.is_set()


def test_a_bad_cron_line_is_refused_when_the_scheduler_is_built() -> None:
    with pytest.raises(ValueError):
        NightlyScheduler(Probe(), cron="61 * * * *")


def test_the_next_firing_follows_the_configured_time_zone() -> None:
    nightly = NightlyScheduler(Probe(), cron="0 2 * * *", timezone="America/New_York")
    after = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    fire = nightly.trigger.get_next_fire_time(None, after)
    assert fire.astimezone(UTC) == datetime(2026, 7, 2, 6, 0, tzinfo=UTC)  # 02:00 EDT
