"""Deleting recordings and transcriptions: single deletes, bulk chunks, the 404 fallback."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web

from tests.fixtures.telnyx_stub import TelnyxStub, error

pytestmark = pytest.mark.timeout(30)


async def test_delete_recording_is_true_when_deleted_and_false_when_already_gone(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    (rid,) = telnyx_stub.add_recordings(1)
    client = make_client()
    assert await client.delete_recording(rid) is True
    assert await client.delete_recording(rid) is False
    assert client.stats.snapshot()["DELETE /recordings/{id} 404"] == 1


async def test_delete_transcription_is_false_when_already_gone(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    (tid,) = telnyx_stub.add_transcriptions(1)
    client = make_client()
    assert await client.delete_transcription(tid) is True
    assert await client.delete_transcription(tid) is False
    assert client.stats.snapshot()["DELETE /recording_transcriptions/{id} 404"] == 1


async def test_bulk_delete_sends_chunks_of_chunk_size(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    ids = telnyx_stub.add_recordings(250)
    result = await make_client().delete_recordings(ids, chunk_size=100)
    assert sorted(result.deleted) == sorted(ids)
    assert result.failed == {}
    posts = telnyx_stub.seen("POST", "/recordings/actions/delete")
    assert sorted(len(json.loads(p.body)["ids"]) for p in posts) == [50, 100, 100]
    assert telnyx_stub.recordings == {}


async def test_bulk_delete_of_nothing_sends_nothing(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    result = await make_client().delete_recordings([])
    assert (result.deleted, result.failed) == ([], {})
    assert telnyx_stub.requests == []


async def test_bulk_delete_sends_each_id_once(telnyx_stub: TelnyxStub, make_client: Any) -> None:
    ids = telnyx_stub.add_recordings(2)
    result = await make_client().delete_recordings([ids[0], ids[1], ids[0]])
    assert result.deleted == ids
    (post,) = telnyx_stub.seen("POST", "/recordings/actions/delete")
    assert json.loads(post.body) == {"ids": ids}


async def test_a_chunk_answering_404_falls_back_to_single_deletes_where_404_counts_as_deleted(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    present = telnyx_stub.add_recordings(3)
    gone = ["already-gone-1", "already-gone-2"]

    async def no_id_found(request: web.Request, p: dict[str, str]) -> web.Response:
        return error(404, "Not Found")

    telnyx_stub.on("POST", "/recordings/actions/delete", no_id_found)
    result = await make_client().delete_recordings(present + gone, chunk_size=10)
    assert sorted(result.deleted) == sorted(present + gone)
    assert result.failed == {}
    singles = [r.path for r in telnyx_stub.requests if r.method == "DELETE"]
    assert len(singles) == 5
    assert telnyx_stub.recordings == {}


async def test_a_chunk_that_keeps_failing_reports_its_ids_and_the_others_are_deleted(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    ids = telnyx_stub.add_recordings(6)
    default = telnyx_stub._bulk_delete

    async def fail_chunk_with_last_id(request: web.Request, p: dict[str, str]) -> web.Response:
        if ids[-1] in (await request.json())["ids"]:
            return error(500, "Internal Server Error")
        return await default(request, p)

    telnyx_stub.on("POST", "/recordings/actions/delete", fail_chunk_with_last_id)
    result = await make_client(max_attempts=2).delete_recordings(ids, chunk_size=2)
    assert sorted(result.deleted) == sorted(ids[:4])
    assert set(result.failed) == set(ids[4:])
    reason = result.failed[ids[5]]
    assert "HTTP 500" in reason and "\n" not in reason
    posts = telnyx_stub.seen("POST", "/recordings/actions/delete")
    assert len(posts) == 2 + 2  # two good chunks, the bad one tried max_attempts times


async def test_single_delete_failures_in_the_fallback_are_reported_per_id(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    ids = telnyx_stub.add_recordings(3)

    async def no_id_found(request: web.Request, p: dict[str, str]) -> web.Response:
        return error(404, "Not Found")

    default = telnyx_stub._delete_recording

    async def forbid_one(request: web.Request, p: dict[str, str]) -> web.Response:
        if p["id"] == ids[1]:
            return error(403, "Forbidden")
        return await default(request, p)

    telnyx_stub.on("POST", "/recordings/actions/delete", no_id_found)
    telnyx_stub.on("DELETE", "/recordings/{id}", forbid_one)
    result = await make_client().delete_recordings(ids)
    assert sorted(result.deleted) == sorted([ids[0], ids[2]])
    assert list(result.failed) == [ids[1]]
    assert "HTTP 403" in result.failed[ids[1]]


async def test_bulk_delete_never_raises_even_when_every_chunk_fails(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    ids = telnyx_stub.add_recordings(4)

    async def unauthorized(request: web.Request, p: dict[str, str]) -> web.Response:
        return error(401, "Unauthorized")

    telnyx_stub.on("POST", "/recordings/actions/delete", unauthorized)
    result = await make_client().delete_recordings(ids, chunk_size=3)
    assert result.deleted == []
    assert sorted(result.failed) == sorted(ids)
    assert len(telnyx_stub.seen("POST", "/recordings/actions/delete")) == 2


async def test_an_id_is_percent_encoded_into_its_path_segment(
    telnyx_stub: TelnyxStub, make_client: Any
) -> None:
    raw_paths: list[str] = []

    async def gone(request: web.Request, _: dict[str, str]) -> web.Response:
        raw_paths.append(request.raw_path)
        return error(404, "Not Found")

    telnyx_stub.on("DELETE", "/recordings/{id}", gone)
    client = make_client()
    assert await client.delete_recording("a b?c#") is False
    assert raw_paths == ["/v2/recordings/a%20b%3Fc%23"]
    assert client.stats.snapshot()["DELETE /recordings/{id} 404"] == 1
