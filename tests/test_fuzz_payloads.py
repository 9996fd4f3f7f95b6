"""Hostile API payloads: each bad item is reported and left in Telnyx; the run goes on.

Hypothesis corrupts the sandbox's own data (missing fields, nulls, wrong types, unknown enums,
huge strings, hostile ids, bad timestamps) for recordings, transcriptions and stored storage
credentials, then runs the archive into a local folder. For every example: the run returns,
nothing is deleted without a verified archive (tests/fixtures/invariants.violations), every
recording nobody touched is archived, and every recording left behind is counted and reported.
Non-JSON bodies (an HTML error page with a 200, plain text, broken JSON) come from a middleware
put in front of the sandbox. Each test prints how many examples it tried.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import patch

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.archive.options import ArchiveOptions, RunReport, Window
from pipeline.archive.run import archive
from pipeline.sandbox import SandboxConfig, SandboxServer
from pipeline.sandbox import app as sandbox_app
from pipeline.storage.select import backend_for_url
from pipeline.storage.settings import StorageSettings
from pipeline.telnyx import TelnyxClient
from pipeline.telnyx.errors import TelnyxError
from tests.fixtures.invariants import violations

WINDOW = Window(datetime(2000, 1, 1, tzinfo=UTC), datetime.now(UTC) - timedelta(hours=24))
FAST = dict(requests_per_second=1000.0, max_concurrency=16, backoff_base=0.001, backoff_max=0.01)
DEAD = "http://127.0.0.1:9"  # discard port: nothing listens, so every store call fails fast
STORES = dict(
    s3_endpoint_url=DEAD, gcs_endpoint_url=DEAD, azure_blob_endpoint=DEAD + "/{account_name}"
)
FUZZ = settings(
    max_examples=30,
    deadline=None,
    derandomize=True,  # the same examples on every CI run
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
RECORDINGS = 6

RECORDING_FIELDS = (
    "id record_type call_control_id call_leg_id call_session_id conference_id connection_id "
    "channels source status initiated_by from to duration_millis recording_started_at "
    "recording_ended_at created_at updated_at"
).split()
RECORDING_ENUMS = ["record_type", "channels", "source", "status"]
RECORDING_TIMES = ["recording_started_at", "recording_ended_at", "created_at", "updated_at"]
TRANSCRIPTION_FIELDS = (
    "id record_type recording_id status transcription_text duration_millis created_at updated_at"
).split()
TRANSCRIPTION_TIMES = ["created_at", "updated_at"]

HOSTILE_IDS = st.one_of(
    st.sampled_from(
        [
            "../x",
            "..",
            ".",
            "a/b",
            "/abs",
            "x\x00y",
            "a\\b",
            "..%2Fx",
            "%2e%2e",
            "\u202egnp.exe",
            "ｆｕｌｌｗｉｄｔｈ",
            "é\u0301",
            "\ud800",  # a lone surrogate
            " ",
            "",
            "a" * 300,
            "id?x=1#y",
            "C:\\x",
        ]
    ),
    st.text(max_size=12),
)
WRONG_TYPES = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
HUGE = st.integers(min_value=10_000, max_value=1_000_000).map(lambda n: "Z" * n)
BAD_TIMES = st.one_of(
    st.sampled_from(
        [
            "yesterday",
            "2026-13-45T25:61:00Z",
            "",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999Z",
            "2026-01-01T00:00:00+14:00",
            "2026-01-01",
            "2026-01-01T00:00:00",
            "1e9",
        ]
    ),
    st.text(max_size=30),
)
DROP = object()


def mutation(
    fields: list[str], enums: list[str], times: list[str], ids: list[str]
) -> st.SearchStrategy[tuple[str, Any]]:
    return st.one_of(
        st.tuples(st.sampled_from(fields), st.just(DROP)),
        st.tuples(st.sampled_from(fields), st.none()),
        st.tuples(st.sampled_from(fields), WRONG_TYPES),
        st.tuples(st.sampled_from(enums), st.text(max_size=20)),
        st.tuples(st.sampled_from(fields), HUGE),
        st.tuples(st.sampled_from(ids), HOSTILE_IDS),
        st.tuples(st.sampled_from(times), BAD_TIMES),
        st.tuples(st.text(min_size=1, max_size=10), st.text(max_size=10)),  # unknown field
    )


RECORDING_MUTATION = mutation(
    RECORDING_FIELDS, RECORDING_ENUMS, RECORDING_TIMES, ["id", "connection_id"]
)
TRANSCRIPTION_MUTATION = mutation(
    TRANSCRIPTION_FIELDS, ["record_type", "status"], TRANSCRIPTION_TIMES, ["id", "recording_id"]
)


def apply(item: dict[str, Any], changes: list[tuple[str, Any]]) -> None:
    for name, value in changes:
        if value is DROP:
            item.pop(name, None)
        else:
            item[name] = value


# Recording corruptions are applied on the wire, not to the sandbox's own records: its
# bookkeeping (download links, deletes) stays keyed by the real id, as Telnyx's would.
SERVED: dict[str, list[tuple[str, Any]]] = {}
_recording_out = sandbox_app.recording_out


def hostile_recording_out(request: web.Request, rec: dict[str, Any]) -> dict[str, Any]:
    out = _recording_out(request, rec)
    changes = SERVED.get(rec["id"], [])
    apply(out, changes)
    served_id = out.get("id")
    if served_id != rec["id"] and isinstance(served_id, str):
        # Links follow the id the API claims, so they lead nowhere real.
        out["download_urls"] = _recording_out(request, {**rec, "id": served_id})["download_urls"]
    return out


def sandbox_config(**changes: Any) -> SandboxConfig:
    fields: dict[str, Any] = dict(
        recordings=RECORDINGS,
        seed=5,
        audio_bytes=512,
        connections=2,
        in_progress_ratio=0.0,
        transcription_ratio=0.8,
        # Page numbers: the cursor style needs the ids it is fuzzed with to build its cursors.
        transcription_pagination="page",
    )
    fields.update(changes)
    return SandboxConfig(**fields)


async def run_archive(sandbox: SandboxServer, root: Path) -> RunReport:
    storage = StorageSettings(default_destination=root.as_uri(), **STORES)
    async with TelnyxClient(sandbox.config.api_key, sandbox.base_url, **FAST) as client:
        return await archive(
            WINDOW, client=client, storage=storage, options=ArchiveOptions(commit_every=3)
        )


async def check_outcome(
    sandbox: SandboxServer, root: Path, report: RunReport, touched: set[str]
) -> None:
    """The promise, for one example."""
    backend = backend_for_url(root.as_uri(), StorageSettings())
    assert await violations(sandbox, [backend]) == []
    left = set(sandbox.state.recordings)
    assert left <= touched, f"untouched recordings were not archived: {left - touched}"
    if left:
        assert report.errors, "recordings were left in Telnyx without a word"
        assert report.recordings_failed + report.recordings_skipped >= len(left), report


def fuzz_run(
    prepare: Callable[[SandboxServer], set[str]],
    then: Callable[[SandboxServer, RunReport], None] = lambda sandbox, report: None,
    **config: Any,
) -> None:
    """One example: a fresh sandbox and folder, the corruption, a run, the checks."""

    async def go() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            async with SandboxServer(sandbox_config(**config)) as sandbox:
                touched = prepare(sandbox)
                report = await run_archive(sandbox, Path(tmp))
                await check_outcome(sandbox, Path(tmp), report, touched)
                then(sandbox, report)

    asyncio.run(go())


def test_hostile_recordings_are_reported_and_left_while_the_rest_is_archived() -> None:
    tried: list[int] = []

    @FUZZ
    @given(
        st.lists(
            st.tuples(
                st.integers(0, RECORDINGS - 1), st.lists(RECORDING_MUTATION, min_size=1, max_size=3)
            ),
            min_size=1,
            max_size=3,
        )
    )
    def example(changes: list[tuple[int, list[tuple[str, Any]]]]) -> None:
        tried.append(1)

        def prepare(sandbox: SandboxServer) -> set[str]:
            keys = sorted(sandbox.state.recordings)
            SERVED.clear()
            for index, fields in changes:
                SERVED.setdefault(keys[index], []).extend(fields)
            return set(SERVED)

        fuzz_run(prepare)

    with patch.object(sandbox_app, "recording_out", hostile_recording_out):
        example()
    print(f"recording payloads: {len(tried)} examples")
    assert len(tried) >= 20


def test_hostile_transcriptions_are_reported_and_never_cost_a_recording() -> None:
    tried: list[int] = []

    @FUZZ
    @given(
        st.lists(
            st.tuples(st.integers(0, 10), st.lists(TRANSCRIPTION_MUTATION, min_size=1, max_size=3)),
            min_size=1,
            max_size=3,
        )
    )
    def example(changes: list[tuple[int, list[tuple[str, Any]]]]) -> None:
        tried.append(1)

        mutated: set[str] = set()

        def prepare(sandbox: SandboxServer) -> set[str]:
            transcriptions = sandbox.state.transcriptions
            keys = sorted(transcriptions)
            touched = set()
            for index, fields in changes:
                key = keys[index % len(keys)]
                touched.add(transcriptions[key]["recording_id"])  # its recording may wait
                mutated.add(key)
                apply(transcriptions[key], fields)
            return touched

        def left_is_reported(sandbox: SandboxServer, report: RunReport) -> None:
            left = mutated & set(sandbox.state.transcriptions)
            if left:
                assert report.errors, f"transcriptions left in Telnyx without a word: {left}"

        fuzz_run(prepare, left_is_reported)

    example()
    print(f"transcription payloads: {len(tried)} examples")
    assert len(tried) >= 20


CREDENTIAL_FIELDS = (
    "backend bucket region aws_access_key_id aws_secret_access_key endpoint credentials "
    "account_name account_key"
).split()
CREDENTIAL_BODY = st.one_of(
    st.fixed_dictionaries(
        {
            "backend": st.one_of(
                st.sampled_from(["s3", "s3-generic", "gcs", "azure"]),
                st.text(max_size=8),
                WRONG_TYPES,
            ),
            "configuration": st.one_of(
                st.dictionaries(
                    st.sampled_from(CREDENTIAL_FIELDS),
                    st.one_of(HOSTILE_IDS, WRONG_TYPES, st.none(), HUGE),
                    max_size=6,
                ),
                WRONG_TYPES,
                st.none(),
            ),
        }
    ),
    WRONG_TYPES,
    st.none(),
)


def test_hostile_stored_credentials_keep_their_connection_in_telnyx_and_others_go_on() -> None:
    tried: list[int] = []

    @settings(FUZZ, max_examples=25)
    @given(CREDENTIAL_BODY)
    def example(body: Any) -> None:
        tried.append(1)

        def prepare(sandbox: SandboxServer) -> set[str]:
            conn = sandbox.state.connection_ids[0]
            sandbox.state.credentials[conn] = body  # stored as-is, past the API's validation
            return {k for k, r in sandbox.state.recordings.items() if r["connection_id"] == conn}

        fuzz_run(prepare)

    example()
    print(f"credential payloads: {len(tried)} examples")
    assert len(tried) >= 20


# --- bodies that are not the promised JSON ---------------------------------------------------

HTML_PAGE = (
    b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body>oops</body></html>"
)
NOT_JSON: dict[str, tuple[bytes, str]] = {
    "html error page": (HTML_PAGE, "text/html"),
    "plain text": (b"Service temporarily unavailable", "text/plain"),
    "cut-off json": (b'{"data": [{"id": "abc"', "application/json"),
    "json array": (b"[1, 2, 3]", "application/json"),
    "data is null": (b'{"data": null}', "application/json"),
    "empty body": (b"", "application/json"),
}
ROUTES = {
    "list recordings": ("GET", "/v2/recordings"),
    "list transcriptions": ("GET", "/v2/recording_transcriptions"),
    "get recording": ("GET", "/v2/recordings/"),
    "get credential": ("GET", "/v2/custom_storage_credentials/"),
}


def answering(method: str, path: str, body: bytes, content_type: str) -> Any:
    """A middleware that answers matching calls with a 200 and `body`."""

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        exact = request.path == path
        under = path.endswith("/") and request.path.startswith(path)
        if request.method == method and (exact or under):
            return web.Response(status=200, body=body, content_type=content_type)
        return await handler(request)

    return middleware


async def run_with_bad_route(route: str, body: bytes, content_type: str, root: Path) -> None:
    method, path = ROUTES[route]
    # Expired links force the GET /recordings/{id} refresh; credentials exist for connection 0.
    changes: dict[str, Any] = {"fault_expire": 1.0} if route == "get recording" else {}
    sandbox = SandboxServer(sandbox_config(**changes))
    sandbox.app.middlewares.insert(0, answering(method, path, body, content_type))
    async with sandbox:
        before = set(sandbox.state.recordings)
        try:
            report = await run_archive(sandbox, root)
        except TelnyxError as exc:
            # Without a listing nothing can be archived: the run stops with one clear line.
            assert route.startswith("list"), f"{route}: {exc}"
            assert "non-JSON" in str(exc) or "without a list" in str(exc), str(exc)
            assert "\n" not in str(exc)
            assert set(sandbox.state.recordings) == before, "nothing deleted"
        else:
            assert not route.startswith("list") or route == "list transcriptions"
            assert report.errors, f"{route}: the bad answer was not reported"
            assert set(sandbox.state.recordings) == before or route != "get recording"
        backend = backend_for_url(root.as_uri(), StorageSettings())
        assert await violations(sandbox, [backend]) == []


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("kind", sorted(NOT_JSON))
async def test_a_200_with_a_body_that_is_not_the_promised_json_deletes_nothing_unverified(
    route: str, kind: str, tmp_path: Path
) -> None:
    body, content_type = NOT_JSON[kind]
    await run_with_bad_route(route, body, content_type, tmp_path)


def test_arbitrary_bytes_as_a_listing_page_are_refused_cleanly() -> None:
    tried: list[int] = []

    @settings(FUZZ, max_examples=25)
    @given(st.binary(max_size=300), st.sampled_from(["text/html", "application/json"]))
    def example(body: bytes, content_type: str) -> None:
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return  # a JSON object is the item tests' business
        tried.append(1)
        with tempfile.TemporaryDirectory() as tmp:
            asyncio.run(run_with_bad_route("list recordings", body, content_type, Path(tmp)))

    example()
    print(f"non-JSON listing bodies: {len(tried)} examples")
    assert len(tried) >= 15
