"""Every request the client can send validates against the OpenAPI subset spec (openapi-core).

The client runs against the local stub; each captured request is then validated. Two notes:
  * openapi-core's deepObject reader only knows one level (`filter[x]`), while the spec nests
    (`filter[created_at][gte]`); the reader below builds nested objects, then openapi-core
    validates them as usual (including `additionalProperties: false` on the ranges).
  * `page[after]` (the cursor of /recording_transcriptions) is not declared by the spec, whose
    own example `meta.next` uses it. The `page` object has no `additionalProperties: false`,
    so it validates; `test_the_cursor_param_is_undeclared_but_allowed` pins that down.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from openapi_core import Config, OpenAPI
from openapi_core.casting.schemas import oas31_schema_casters_factory
from openapi_core.datatypes import RequestParameters
from openapi_core.deserializing.styles import StyleDeserializersFactory, style_deserializers
from werkzeug.datastructures import Headers, ImmutableMultiDict

from pipeline.telnyx import RecordingFilters
from pipeline.telnyx.models import (
    AzureConfiguration,
    GCSConfiguration,
    S3Configuration,
    Secret,
    StorageCredential,
)
from tests.fixtures.telnyx_stub import Captured, TelnyxStub, error, transcription_json

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[1]
SPEC = REPO / "pipeline" / "sandbox" / "spec" / "telnyx-recordings-subset.openapi.yml"
if not SPEC.exists():
    SPEC = Path("/work/shared/telnyx-openapi/telnyx-recordings-subset.openapi.yml")
SPEC_HOST = "https://api.telnyx.com"  # the spec's server is https://api.telnyx.com/v2


def nested_deep_object_loads(
    explode: bool, name: str, schema_type: str, location: Mapping[str, Any]
) -> Any:
    if (explode, schema_type) != (True, "object"):
        raise ValueError("not available")
    values: dict[str, Any] = {}
    for key in location:
        parts = re.findall(r"\[([^\]]*)\]", key)
        if not key.startswith(f"{name}[") or not parts:
            continue
        node = values
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = location[key]
    if not values:
        raise KeyError(name)
    return values


@pytest.fixture(scope="module")
def openapi() -> OpenAPI:
    config = Config(
        style_deserializers_factory=StyleDeserializersFactory(
            oas31_schema_casters_factory,
            style_deserializers={**style_deserializers, "deepObject": nested_deep_object_loads},
        )
    )
    return OpenAPI.from_file_path(str(SPEC), config=config)


@dataclass
class SpecRequest:
    """openapi-core's Request protocol, built from a request the stub captured."""

    captured: Captured
    host_url: str = SPEC_HOST
    parameters: RequestParameters = field(init=False)

    def __post_init__(self) -> None:
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(self.captured.query),
            header=Headers(self.captured.headers),
            cookie=ImmutableMultiDict(),
        )

    @property
    def path(self) -> str:
        return self.captured.path

    @property
    def method(self) -> str:
        return self.captured.method.lower()

    @property
    def body(self) -> bytes | None:
        return self.captured.body or None

    @property
    def content_type(self) -> str:
        return self.captured.headers.get("Content-Type", "").lower()


def validate_all(openapi: OpenAPI, requests: list[Captured]) -> list[str]:
    problems = []
    for captured in requests:
        try:
            openapi.validate_request(SpecRequest(captured))
        except Exception as exc:  # the message names the violation
            cause = f" ({exc.__cause__})" if exc.__cause__ else ""
            problems.append(f"{captured.method} {captured.path} {captured.query}: {exc}{cause}")
    return problems


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


async def drive_every_method(stub: TelnyxStub, client: Any) -> None:
    """Call every public method, along every path that sends a different request."""
    ids = stub.add_recordings(30)
    tids = stub.add_transcriptions(12)
    start = datetime(2026, 8, 1, tzinfo=UTC)
    end = datetime(2026, 8, 2, tzinfo=UTC)
    filters = RecordingFilters(
        created_at_gte=start,
        created_at_lte=end,
        start_time_gte=start,
        start_time_lte=end,
        end_time_gte=start,
        end_time_lte=end,
        connection_id="1750000000",
        call_leg_id="428c31b6-7af4-4bcb-b7f5-5013ef9657c1",
        call_session_id="428c31b6-7af4-4bcb-b7f5-5013ef9657c2",
        call_control_id="v3:e-31OnvjEM7Y4wvxr3TKNk8M3QyLcGZPiUIzCGtwQtOtEjY-B0urkw",
        conference_id="428c31b6-7af4-4bcb-b7f5-5013ef9657c3",
        conference_region="us",
        from_="+15551234567",
        to="+15557654321",
        sip_call_id="428c31b6-7af4-4bcb-b7f5-5013ef9657c4",
    )
    await client.get_recordings_page(page_number=2, page_size=10, filters=filters)
    assert len([r async for r in client.list_recordings(filters, page_size=10)]) == 30
    listed = client.list_transcriptions(
        created_at_gte=start, created_at_lte=end, recording_id=ids[0], page_size=5
    )
    assert len([t async for t in listed]) == 12
    await client.get_recording(ids[0])
    await client.delete_recording(ids[0])
    await client.delete_recording(ids[0])  # 404: already gone
    await client.delete_recordings(ids[1:20], chunk_size=7)
    await client.get_transcription(tids[0])
    await client.delete_transcription(tids[0])
    for credential in CREDENTIALS:
        await client.get_storage_credential(credential.connection_id)  # 404 -> None
        await client.create_storage_credential(credential.connection_id, credential)
        await client.get_storage_credential(credential.connection_id)
        await client.update_storage_credential(credential.connection_id, credential)
        await client.delete_storage_credential(credential.connection_id)

    # The fallbacks send other requests: per-id deletes, and page[number] for transcriptions.
    async def no_id_found(request: web.Request, p: dict[str, str]) -> web.Response:
        return error(404, "Not Found")

    async def no_meta(request: web.Request, p: dict[str, str]) -> web.Response:
        number = int(request.query["page[number]"])
        return web.json_response({"data": [transcription_json(number)] if number < 3 else []})

    stub.on("POST", "/recordings/actions/delete", no_id_found)
    stub.on("GET", "/recording_transcriptions", no_meta)
    await client.delete_recordings(ids[20:])
    assert len([t async for t in client.list_transcriptions(created_at_gte=start)]) == 2


async def test_every_request_the_client_sends_validates_against_the_spec(
    telnyx_stub: TelnyxStub, make_client: Any, openapi: OpenAPI
) -> None:
    await drive_every_method(telnyx_stub, make_client())
    api_requests = [r for r in telnyx_stub.requests if r.path.startswith("/v2/")]
    operations = {(r.method, re.sub(r"/[^/]*\d[^/]*$", "/{id}", r.path)) for r in api_requests}
    assert operations >= {
        ("GET", "/v2/recordings"),
        ("GET", "/v2/recordings/{id}"),
        ("DELETE", "/v2/recordings/{id}"),
        ("POST", "/v2/recordings/actions/delete"),
        ("GET", "/v2/recording_transcriptions"),
        ("GET", "/v2/recording_transcriptions/{id}"),
        ("DELETE", "/v2/recording_transcriptions/{id}"),
        ("GET", "/v2/custom_storage_credentials/{id}"),
        ("POST", "/v2/custom_storage_credentials/{id}"),
        ("PUT", "/v2/custom_storage_credentials/{id}"),
        ("DELETE", "/v2/custom_storage_credentials/{id}"),
    }
    assert any("page[after]" in r.params for r in api_requests)
    assert validate_all(openapi, api_requests) == []


async def test_the_validator_does_reject_a_request_that_breaks_the_spec(openapi: OpenAPI) -> None:
    headers = {"Authorization": "Bearer k"}
    bad = [
        Captured("GET", "/v2/recordings", [("page[size]", "251")], headers, b""),
        Captured("GET", "/v2/recordings", [("filter[created_at][after]", "x")], headers, b""),
        Captured("GET", "/v2/recordings", [], {}, b""),  # no bearer token
        Captured(
            "POST",
            "/v2/recordings/actions/delete",
            [],
            {**headers, "Content-Type": "application/json"},
            b'{"id": []}',
        ),
    ]
    assert len(validate_all(openapi, bad)) == len(bad)


def test_the_cursor_param_is_undeclared_but_allowed() -> None:
    spec = yaml.safe_load(SPEC.read_text())
    page = spec["components"]["parameters"]["call-recordings_PageConsolidated"]["schema"]
    assert set(page["properties"]) == {"number", "size"}  # no `after`
    assert page.get("additionalProperties", True) is not False
    meta = spec["components"]["schemas"]["call-recordings_CursorPaginationMeta"]
    assert "page[after]=" in meta["properties"]["next"]["example"]
