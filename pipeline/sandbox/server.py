"""Run the sandbox: in-process for tests (SandboxServer) or until Ctrl-C (serve)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from types import TracebackType

from aiohttp import web

from pipeline.sandbox.app import create_app
from pipeline.sandbox.config import SandboxConfig
from pipeline.sandbox.state import SandboxState


class SandboxServer:
    """`async with SandboxServer(config) as sb:` serves on sb.base_url until the block ends."""

    def __init__(self, config: SandboxConfig, host: str = "127.0.0.1", port: int = 0) -> None:
        self.config = config
        self.host = host
        self.port = port
        self.state = SandboxState(config)
        self.app = create_app(config, self.state)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url + "/v2"

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> SandboxServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        return f"SandboxServer(url={self.url!r}, recordings={len(self.state.recordings)})"


async def serve(config: SandboxConfig, host: str = "127.0.0.1", port: int = 8020) -> None:
    """Serve until cancelled or SIGINT/SIGTERM; print where and with which key."""
    async with SandboxServer(config, host, port) as server:
        s = server.state
        print(f"Telnyx sandbox: {server.base_url}", flush=True)
        # The sandbox key is a test value, not a secret; printing it is how a user learns it.
        print(f"API key: {config.api_key}", flush=True)
        print(
            f"{len(s.recordings)} recordings, {len(s.transcriptions)} transcriptions, "
            f"connections: {', '.join(s.connection_ids)}; "
            f"created_at in [{s.window[0].isoformat()}, {s.window[1].isoformat()})",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # non-POSIX
                loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            print("sandbox stopped", file=sys.stderr, flush=True)


class ThreadedSandbox:
    """A SandboxServer on its own event loop in a thread, for synchronous callers (a CLI
    subprocess under test, a benchmark) that talk to it over HTTP."""

    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server = SandboxServer(config)

    def __enter__(self) -> ThreadedSandbox:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def state(self) -> SandboxState:
        return self.server.state
