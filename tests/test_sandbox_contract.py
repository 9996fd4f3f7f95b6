"""Every kind of answer the sandbox gives validates against the Telnyx OpenAPI subset.

Each case below produces one distinct response (operation, status, shape) and validates it with
openapi-core. The spec declares no 422 or 429 for these operations, so those bodies (and 503s)
are validated against the operation's `default` response: the `errors[]` schema.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

import pipeline.sandbox
from pipeline.sandbox import SandboxConfig, SandboxServer
from tests.fixtures.sandbox import auth, small_config

SPEC_PATH = Path(pipeline.sandbox.__file__).parent / "spec" / "telnyx-recordings-subset.openapi.yml"
SERVER = "https://api.telnyx.com"  # the spec's server is https://api.telnyx.com/v2


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    return OpenAPI.from_file_path(str(SPEC_PATH))


class Client:
    """Sends a request to the sandbox and validates the answer (and the request) against the spec."""

    def __init__(self, sb: SandboxServer, session: aiohttp.ClientSession, spec: OpenAPI) -> None:
        self.sb, self.session, self.spec = sb, session, spec

    async def __call__(
        self,
        method: str,
        path: str,
        expect: int | set[int],
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        valid_request: bool = True,
    ) -> Any:
        kw: dict[str, Any] = {"params": params, "headers": headers}
        if body is not None:
            kw["json"] = body
        async with self.session.request(method, self.sb.url + "/v2" + path, **kw) as r:
            raw = await r.read()
            status, ctype = r.status, r.headers.get("Content-Type", "application/json")
        assert status in (expect if isinstance(expect, set) else {expect}), raw[:300]
        request = MockRequest(
            SERVER,
            method.lower(),
            "/v2" + path,
            args=params or {},
            headers={**auth(self.sb), **(headers or {})},
            data=json.dumps(body).encode() if body is not None else None,
        )
        # openapi-core cannot deserialize nested deepObject keys (filter[created_at][gte]), which
        # OpenAPI leaves undefined; such requests are checked by the sandbox's own tests instead.
        nested = any(key.count("[") > 1 for key in params or {})
        if valid_request and not nested:
            self.spec.validate_request(request)
        self.spec.validate_response(
            request, MockResponse(raw, status, content_type=ctype.split(";")[0])
        )
        return json.loads(raw) if raw else None


S3 = {
    "backend": "s3",
    "configuration": {
        "backend": "s3",
        "bucket": "b",
        "region": "us-east-1",
        "aws_access_key_id": "AKIA",
        "aws_secret_access_key": "s",
    },
}
S3_GENERIC = {
    "backend": "s3-generic",
    "configuration": {
        **S3["configuration"],
        "backend": "s3-generic",
        "endpoint": "https://s3.example.com",
    },
}
GCS = {"backend": "gcs", "configuration": {"backend": "gcs", "bucket": "g", "credentials": "{}"}}
AZURE = {
    "backend": "azure",
    "configuration": {"backend": "azure", "account_name": "a", "account_key": "k", "bucket": "c"},
}

Case = Callable[[Client], Awaitable[Any]]
CASES: dict[str, tuple[Case, SandboxConfig | None]] = {}


def case(name: str, config: SandboxConfig | None = None) -> Callable[[Case], Case]:
    def register(fn: Case) -> Case:
        CASES[name] = (fn, config)
        return fn

    return register


def rec_id(c: Client) -> str:
    return next(iter(c.sb.state.recordings))


def tr_id(c: Client) -> str:
    return next(iter(c.sb.state.transcriptions))


def conn(c: Client) -> str:
    return c.sb.state.connection_ids[0]


@case("GetRecordings 200 page")
async def _(c: Client) -> None:
    body = await c("GET", "/recordings", 200, params={"page[size]": "25", "page[number]": "2"})
    assert len(body["data"]) == 25 and body["meta"]["page_number"] == 2


@case("GetRecordings 200 all filters")
async def _(c: Client) -> None:
    rec = next(r for r in c.sb.state.recordings.values() if r["source"] == "conference")
    hidden = c.sb.state._hidden[rec["id"]]
    params = {
        f"filter[{k}]": rec[k]
        for k in (
            "connection_id",
            "call_leg_id",
            "call_session_id",
            "call_control_id",
            "conference_id",
            "from",
            "to",
        )
    }
    params |= {
        "filter[conference_region]": hidden["conference_region"],
        "filter[sip_call_id]": hidden["sip_call_id"],
    }
    for name, field in (
        ("created_at", "created_at"),
        ("start_time", "recording_started_at"),
        ("end_time", "recording_ended_at"),
    ):
        params[f"filter[{name}][gte]"] = params[f"filter[{name}][lte]"] = rec[field]
    body = await c("GET", "/recordings", 200, params=params)
    assert [r["id"] for r in body["data"]] == [rec["id"]]


@case("GetRecordings 200 empty page")
async def _(c: Client) -> None:
    body = await c("GET", "/recordings", 200, params={"page[number]": "99"})
    assert body["data"] == []


@case("GetRecordings 401")
async def _(c: Client) -> None:
    await c("GET", "/recordings", 401, headers={"Authorization": "Bearer nope"})


@case("GetRecordings 422 page size (default)")
async def _(c: Client) -> None:
    await c("GET", "/recordings", 422, params={"page[size]": "251"}, valid_request=False)


@case("GetRecordings 422 page number (default)")
async def _(c: Client) -> None:
    await c("GET", "/recordings", 422, params={"page[number]": "0"}, valid_request=False)


@case("GetRecordings 422 timestamp (default)")
async def _(c: Client) -> None:
    await c("GET", "/recordings", 422, params={"filter[created_at][gte]": "soon"})


@case("GetRecordings 429 (default)", small_config(rate_limit=0.01, rate_burst=1))
async def _(c: Client) -> None:
    await c("GET", "/recordings", 200)
    await c("GET", "/recordings", 429)


async def until_status(c: Client, wanted: int) -> None:
    """With fault_5xx=1 every call fails with 500 or 503; validate each until `wanted` comes."""
    for _ in range(64):
        if (await c("GET", "/recordings", {500, 503}))["errors"][0]["code"] == str(wanted):
            return
    raise AssertionError(f"no {wanted} in 64 faulty answers")


@case("GetRecordings 500", small_config(fault_5xx=1.0))
async def _(c: Client) -> None:
    await until_status(c, 500)


@case("GetRecordings 503 (default)", small_config(fault_5xx=1.0))
async def _(c: Client) -> None:
    await until_status(c, 503)


@case("GetRecording 200")
async def _(c: Client) -> None:
    body = await c("GET", f"/recordings/{rec_id(c)}", 200)
    assert set(body["data"]["download_urls"]) == {"mp3", "wav"}


@case("GetRecording 404")
async def _(c: Client) -> None:
    await c("GET", "/recordings/3fa85f64-5717-4562-b3fc-2c963f66afa6", 404)


@case("DeleteRecording 200")
async def _(c: Client) -> None:
    await c("DELETE", f"/recordings/{rec_id(c)}", 200)


@case("DeleteRecording 404")
async def _(c: Client) -> None:
    rid = rec_id(c)
    c.sb.state.delete_recordings([rid])
    await c("DELETE", f"/recordings/{rid}", 404)


@case("DeleteRecordings 200")
async def _(c: Client) -> None:
    ids = list(c.sb.state.recordings)[:5]
    assert await c("POST", "/recordings/actions/delete", 200, body={"ids": [*ids, "gone"]}) == {
        "status": "ok"
    }


@case("DeleteRecordings 422 no ids (default)")
async def _(c: Client) -> None:
    await c("POST", "/recordings/actions/delete", 422, body={}, valid_request=False)


@case("DeleteRecordings 500 partial (default)", small_config(fault_partial_delete=1.0))
async def _(c: Client) -> None:
    await c(
        "POST", "/recordings/actions/delete", 500, body={"ids": list(c.sb.state.recordings)[:5]}
    )


@case("DeleteRecordings 401")
async def _(c: Client) -> None:
    await c(
        "POST",
        "/recordings/actions/delete",
        401,
        body={"ids": []},
        headers={"Authorization": "Bearer nope"},
    )


@case("getRecordingTranscriptions 200 cursor first")
async def _(c: Client) -> None:
    body = await c("GET", "/recording_transcriptions", 200, params={"page[size]": "5"})
    assert "next" in body["meta"] and "previous" not in body["meta"]


@case("getRecordingTranscriptions 200 cursor middle")
async def _(c: Client) -> None:
    first = await c("GET", "/recording_transcriptions", 200, params={"page[size]": "5"})
    after = first["meta"]["cursors"]["after"]
    body = await c(
        "GET",
        "/recording_transcriptions",
        200,
        params={"page[size]": "5", "page[after]": after},
        valid_request=False,
    )
    assert {"next", "previous"} <= set(body["meta"])


@case("getRecordingTranscriptions 200 filtered by recording")
async def _(c: Client) -> None:
    tr = next(iter(c.sb.state.transcriptions.values()))
    await c(
        "GET",
        "/recording_transcriptions",
        200,
        params={
            "filter[recording_id]": tr["recording_id"],
            "filter[created_at][gte]": tr["created_at"],
        },
    )


@case("getRecordingTranscriptions 200 empty")
async def _(c: Client) -> None:
    body = await c(
        "GET",
        "/recording_transcriptions",
        200,
        params={"filter[created_at][gte]": "2999-01-01T00:00:00Z"},
    )
    assert body == {"data": [], "meta": {"cursors": {}}}


@case("getRecordingTranscriptions 200 page meta", small_config(transcription_pagination="page"))
async def _(c: Client) -> None:
    body = await c("GET", "/recording_transcriptions", 200, params={"page[size]": "5"})
    assert body["meta"]["page_size"] == 5


@case("getRecordingTranscriptions 422 cursor (default)")
async def _(c: Client) -> None:
    await c(
        "GET",
        "/recording_transcriptions",
        422,
        params={"page[after]": "bogus"},
        valid_request=False,
    )


@case("getRecordingTranscriptions 401")
async def _(c: Client) -> None:
    await c("GET", "/recording_transcriptions", 401, headers={"Authorization": "Bearer nope"})


@case("getRecordingTranscription 200 completed")
async def _(c: Client) -> None:
    tid = next(t for t, v in c.sb.state.transcriptions.items() if v["status"] == "completed")
    body = await c("GET", f"/recording_transcriptions/{tid}", 200)
    assert body["data"]["transcription_text"]


@case("getRecordingTranscription 200 in-progress")
async def _(c: Client) -> None:
    tid = next(t for t, v in c.sb.state.transcriptions.items() if v["status"] == "in-progress")
    body = await c("GET", f"/recording_transcriptions/{tid}", 200)
    assert "transcription_text" not in body["data"]


@case("getRecordingTranscription 404")
async def _(c: Client) -> None:
    await c("GET", "/recording_transcriptions/6a09cdc3-8948-47f0-aa62-74ac943d6c58", 404)


@case("deleteRecordingTranscription 200")
async def _(c: Client) -> None:
    await c("DELETE", f"/recording_transcriptions/{tr_id(c)}", 200)


@case("deleteRecordingTranscription 404")
async def _(c: Client) -> None:
    tid = tr_id(c)
    c.sb.state.delete_transcription(tid)
    await c("DELETE", f"/recording_transcriptions/{tid}", 404)


for _name, _body in (("s3", S3), ("s3-generic", S3_GENERIC), ("gcs", GCS), ("azure", AZURE)):

    @case(f"CreateCustomStorageCredentials 200 {_name}")
    async def _(c: Client, body: dict = _body) -> None:
        got = await c("POST", f"/custom_storage_credentials/{conn(c)}", 200, body=body)
        assert got["data"] == body and got["record_type"] == "custom_storage_credentials"

    @case(f"GetCustomStorageCredentials 200 {_name}")
    async def _(c: Client, body: dict = _body) -> None:
        c.sb.state.credentials[conn(c)] = body
        got = await c("GET", f"/custom_storage_credentials/{conn(c)}", 200)
        assert got["connection_id"] == conn(c)


@case("UpdateCustomStorageCredentials 200")
async def _(c: Client) -> None:
    c.sb.state.credentials[conn(c)] = GCS
    await c("PUT", f"/custom_storage_credentials/{conn(c)}", 200, body=AZURE)


@case("UpdateCustomStorageCredentials 404")
async def _(c: Client) -> None:
    await c("PUT", f"/custom_storage_credentials/{conn(c)}", 404, body=AZURE)


@case("CreateCustomStorageCredentials 422 (default)")
async def _(c: Client) -> None:
    await c(
        "POST",
        f"/custom_storage_credentials/{conn(c)}",
        422,
        body={"backend": "s3", "configuration": {"backend": "s3"}},
        valid_request=False,
    )


@case("DeleteCustomStorageCredentials 204")
async def _(c: Client) -> None:
    c.sb.state.credentials[conn(c)] = S3
    assert await c("DELETE", f"/custom_storage_credentials/{conn(c)}", 204) is None


@case("DeleteCustomStorageCredentials 404")
async def _(c: Client) -> None:
    await c("DELETE", f"/custom_storage_credentials/{conn(c)}", 404)


@case("GetCustomStorageCredentials 404 no credentials")
async def _(c: Client) -> None:
    await c("GET", f"/custom_storage_credentials/{conn(c)}", 404)


@case("GetCustomStorageCredentials 404 unknown connection")
async def _(c: Client) -> None:
    body = await c("GET", "/custom_storage_credentials/1234567890", 404)
    assert body["errors"][0]["source"] == {"pointer": "/connection_id"}


@case("GetCustomStorageCredentials 401")
async def _(c: Client) -> None:
    await c(
        "GET",
        f"/custom_storage_credentials/{conn(c)}",
        401,
        headers={"Authorization": "Bearer nope"},
    )


@pytest.mark.parametrize("name", list(CASES))
async def test_response_validates_against_the_spec(name: str, spec: OpenAPI) -> None:
    fn, config = CASES[name]
    async with (
        SandboxServer(config or small_config()) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as session,
    ):
        await fn(Client(sb, session, spec))


def test_the_validator_rejects_a_body_that_breaks_the_spec(spec: OpenAPI) -> None:
    bad = {"data": [{"id": "x", "channels": "triple"}], "meta": {"page_number": "one"}}
    request = MockRequest(SERVER, "get", "/v2/recordings")
    with pytest.raises(Exception, match="(?i)invalid"):
        spec.validate_response(request, MockResponse(json.dumps(bad).encode()))


def test_every_operation_of_the_subset_is_covered() -> None:
    operations = {name.split()[0] for name in CASES}
    assert operations == {
        "GetRecordings",
        "GetRecording",
        "DeleteRecording",
        "DeleteRecordings",
        "getRecordingTranscriptions",
        "getRecordingTranscription",
        "deleteRecordingTranscription",
        "GetCustomStorageCredentials",
        "CreateCustomStorageCredentials",
        "UpdateCustomStorageCredentials",
        "DeleteCustomStorageCredentials",
    }
    assert len(CASES) >= 40
