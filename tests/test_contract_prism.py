"""The client against Prism, a mock server that validates each request against the spec.

Prism answers a request that breaks the spec with 422 and an `sl-violations` header (it may
also add the header to a request it lets through with warnings). A small recording proxy sits
between the client and Prism so each answer's status and headers can be checked; it forwards
bytes unchanged. Prism serves the spec's paths without the /v2 prefix.
"""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from pipeline.telnyx import RecordingFilters, TelnyxClient
from pipeline.telnyx.models import (
    AzureConfiguration,
    GCSConfiguration,
    S3Configuration,
    Secret,
    StorageCredential,
)
from tests.fixtures.servers import NODE_BIN, REPO, free_port, stop, wait_http

PRISM = NODE_BIN / "prism"
SPEC = REPO / "pipeline" / "sandbox" / "spec" / "telnyx-recordings-subset.openapi.yml"

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(not PRISM.exists(), reason=f"Prism is not installed ({PRISM} missing)"),
]


@pytest.fixture(scope="session")
def prism_url() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [str(PRISM), "mock", str(SPEC), "-h", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/", proc, timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@dataclass(frozen=True)
class Answer:
    method: str
    path_qs: str
    status: int
    violations: str | None


@pytest.fixture
async def proxy(prism_url: str) -> AsyncIterator[tuple[str, list[Answer]]]:
    """A loopback proxy to Prism that records every answer; yields (its url, the answers)."""
    answers: list[Answer] = []
    session = aiohttp.ClientSession(auto_decompress=False)

    async def forward(request: web.Request) -> web.Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in ("host",)}
        async with session.request(
            request.method,
            prism_url + request.raw_path,  # raw: the query exactly as the client encoded it
            headers=headers,
            data=await request.read(),
            allow_redirects=False,
        ) as response:
            body = await response.read()
            answers.append(
                Answer(
                    request.method,
                    request.raw_path,
                    response.status,
                    response.headers.get("sl-violations"),
                )
            )
            keep = {
                k: v
                for k, v in response.headers.items()
                if k.lower() in ("content-type", "sl-violations")
            }
            return web.Response(status=response.status, body=body, headers=keep)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", forward)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}", answers
    finally:
        await runner.cleanup()
        await session.close()


CREDENTIALS = [
    StorageCredential("1234567890", "s3", S3Configuration("b", "us-east-1", "AKIA", Secret("k"))),
    StorageCredential(
        "1234567891",
        "s3-generic",
        S3Configuration("b", "auto", "AKIA", Secret("k"), endpoint="https://s3.example.com"),
    ),
    StorageCredential("1234567892", "gcs", GCSConfiguration("b", Secret('{"type": "sa"}'))),
    StorageCredential("1234567893", "azure", AzureConfiguration("c", "acct", Secret("k"))),
]
RECORDING_ID = "428c31b6-7af4-4bcb-b7f5-5013ef9657c1"
TRANSCRIPTION_ID = "6a09cdc3-8948-47f0-aa62-74ac943d6c58"


async def test_prism_accepts_every_request_of_every_method(
    proxy: tuple[str, list[Answer]],
) -> None:
    url, answers = proxy
    start, end = datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 8, 2, tzinfo=UTC)
    filters = RecordingFilters(
        created_at_gte=start,
        created_at_lte=end,
        start_time_gte=start,
        start_time_lte=end,
        end_time_gte=start,
        end_time_lte=end,
        connection_id="1750000000",
        call_leg_id=RECORDING_ID,
        call_session_id=RECORDING_ID,
        call_control_id="v3:e-31OnvjEM7Y4wvxr3TKNk8M3QyLcGZPiUIzCGtwQtOtEjY-B0urkw",
        conference_id=RECORDING_ID,
        conference_region="us",
        from_="+15551234567",
        to="+15557654321",
        sip_call_id=RECORDING_ID,
    )
    results: dict[str, Any] = {}
    async with TelnyxClient("prism-key", url, backoff_base=0.01, max_attempts=2) as client:
        results["page"] = await client.get_recordings_page(page_size=250, filters=filters)
        results["recordings"] = [r async for r in client.list_recordings(filters)]
        results["transcriptions"] = [
            t
            async for t in client.list_transcriptions(
                created_at_gte=start, created_at_lte=end, recording_id=RECORDING_ID
            )
        ]
        results["recording"] = await client.get_recording(RECORDING_ID)
        results["deleted"] = await client.delete_recording(RECORDING_ID)
        results["bulk"] = await client.delete_recordings([RECORDING_ID, "other-id"])
        results["transcription"] = await client.get_transcription(TRANSCRIPTION_ID)
        results["transcription deleted"] = await client.delete_transcription(TRANSCRIPTION_ID)
        for credential in CREDENTIALS:
            cid = credential.connection_id
            assert cid is not None
            results[f"get {cid}"] = await client.get_storage_credential(cid)
            results[f"create {credential.backend}"] = await client.create_storage_credential(
                cid, credential
            )
            results[f"update {credential.backend}"] = await client.update_storage_credential(
                cid, credential
            )
            await client.delete_storage_credential(cid)

    assert answers, "no request reached Prism"
    rejected = [a for a in answers if a.status == 422 or a.violations]
    assert rejected == []
    assert all(200 <= a.status < 300 for a in answers), answers
    # Prism's example meta says total_pages 3: the client asked for pages 2 and 3 too.
    assert sum(a.path_qs.startswith("/recordings?") for a in answers) == 1 + 3
    # Prism repeats its cursor forever: the loop guard stopped after the second page.
    assert sum(a.path_qs.startswith("/recording_transcriptions?") for a in answers) == 2
    assert any("page%5Bafter%5D=" in a.path_qs or "page[after]=" in a.path_qs for a in answers)
    assert results["bulk"].failed == {}
    assert results["deleted"] is True
    assert len(results["recordings"]) == 1  # Prism's one example id, listed once


async def test_prism_does_reject_a_request_that_breaks_the_spec(prism_url: str) -> None:
    """The check above is not vacuous: Prism flags a page size above the maximum."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{prism_url}/recordings",
            params={"page[size]": "251"},
            headers={"Authorization": "Bearer k"},
        ) as response,
    ):
        assert response.status == 422
        assert "page.size" in response.headers["sl-violations"]
