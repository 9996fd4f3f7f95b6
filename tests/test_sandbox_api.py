"""The sandbox's /v2 API: listing, filters, order, pagination, deletion, credentials, errors."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from pipeline.sandbox import SandboxConfig, SandboxServer, SandboxState
from pipeline.sandbox.data import parse_served
from tests.fixtures.sandbox import ANCHOR, auth, small_config


async def get_json(
    session: aiohttp.ClientSession, url: str, params: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with session.get(url, params=params) as r:
        return r.status, await r.json()


async def all_recordings(
    sb: SandboxServer, session: aiohttp.ClientSession, **params: str
) -> list[dict]:
    status, body = await get_json(
        session, sb.base_url + "/recordings", {"page[size]": "250", **params}
    )
    assert status == 200 and body["meta"]["total_pages"] <= 1
    return body["data"]


@pytest.fixture
async def session(sandbox: SandboxServer):
    async with aiohttp.ClientSession(headers=auth(sandbox)) as s:
        yield s


# -- generated data ----------------------------------------------------------------------------
def test_same_seed_gives_the_same_data_and_another_seed_different_data() -> None:
    a, b = SandboxState(small_config()), SandboxState(small_config())
    c = SandboxState(small_config(seed=2))
    assert a.recordings == b.recordings and a.transcriptions == b.transcriptions
    assert a.connection_ids == b.connection_ids
    assert set(a.recordings).isdisjoint(c.recordings)


def test_recordings_are_consistent_and_lie_in_the_window_before_the_anchor() -> None:
    state = SandboxState(small_config(recordings=400, days=5))
    start, end = ANCHOR - timedelta(days=6), ANCHOR - timedelta(days=1)
    assert state.window == (start, end)
    for rec in state.recordings.values():
        created = parse_served(rec["created_at"])
        began, ended = (
            parse_served(rec["recording_started_at"]),
            parse_served(rec["recording_ended_at"]),
        )
        assert start <= created < end
        assert began < ended <= created
        assert ended - began == timedelta(milliseconds=rec["duration_millis"])
        assert rec["from"].startswith("+") and rec["from"][1:].isdigit()
        assert rec["connection_id"] in state.connection_ids and rec["connection_id"].isdigit()
        assert ("conference_id" in rec) == (rec["source"] == "conference")
    values = lambda name: {r[name] for r in state.recordings.values()}  # noqa: E731
    assert values("channels") == {"single", "dual"}
    assert values("source") == {"call", "conference"}
    assert values("connection_id") == set(state.connection_ids)
    assert len(values("initiated_by")) >= 4


def test_transcriptions_follow_their_recording_within_the_hour() -> None:
    state = SandboxState(small_config(recordings=400))
    statuses = {t["status"] for t in state.transcriptions.values()}
    assert statuses == {"completed", "in-progress"}
    with_text = [t for t in state.transcriptions.values() if "transcription_text" in t]
    assert with_text and all(t["status"] == "completed" for t in with_text)
    assert 0 < len(state.transcriptions) < len(state.recordings)
    for t in state.transcriptions.values():
        rec = state.recordings[t["recording_id"]]
        delay = parse_served(t["created_at"]) - parse_served(rec["created_at"])
        assert timedelta(0) < delay < timedelta(hours=1)


def test_default_anchor_puts_every_recording_at_least_a_day_old() -> None:
    state = SandboxState(SandboxConfig(recordings=50, anchor=None))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    newest = max(parse_served(r["created_at"]) for r in state.recordings.values())
    assert newest < today - timedelta(days=1)


# -- listing -------------------------------------------------------------------------------------
async def test_recordings_are_listed_in_created_at_then_id_order(sandbox, session) -> None:
    data = await all_recordings(sandbox, session)
    keys = [(r["created_at"], r["id"]) for r in data]
    assert keys == sorted(keys) and len(data) == 60


async def test_page_number_meta_counts_pages_and_results(sandbox, session) -> None:
    status, body = await get_json(
        session, sandbox.base_url + "/recordings", {"page[size]": "25", "page[number]": "3"}
    )
    assert status == 200
    assert body["meta"] == {
        "page_number": 3,
        "page_size": 25,
        "total_pages": 3,
        "total_results": 60,
    }
    assert len(body["data"]) == 10


async def test_page_size_defaults_to_20_and_pages_past_the_end_are_empty(sandbox, session) -> None:
    _, first = await get_json(session, sandbox.base_url + "/recordings")
    _, past = await get_json(session, sandbox.base_url + "/recordings", {"page[number]": "9"})
    assert len(first["data"]) == 20 and first["meta"]["page_size"] == 20
    assert past["data"] == [] and past["meta"]["total_results"] == 60


async def test_created_at_filter_bounds_are_inclusive(sandbox, session) -> None:
    data = await all_recordings(sandbox, session)
    lo, hi = data[10]["created_at"], data[20]["created_at"]
    got = await all_recordings(
        sandbox, session, **{"filter[created_at][gte]": lo, "filter[created_at][lte]": hi}
    )
    expected = [r["id"] for r in data if lo <= r["created_at"] <= hi]
    assert [r["id"] for r in got] == expected and len(expected) >= 11


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("start_time", "recording_started_at"),
        ("end_time", "recording_ended_at"),
    ],
)
async def test_start_and_end_time_filters_select_by_recording_times(
    sandbox, session, name: str, field: str
) -> None:
    data = await all_recordings(sandbox, session)
    times = sorted(r[field] for r in data)
    lo, hi = times[5], times[30]
    got = await all_recordings(
        sandbox, session, **{f"filter[{name}][gte]": lo, f"filter[{name}][lte]": hi}
    )
    assert {r["id"] for r in got} == {r["id"] for r in data if lo <= r[field] <= hi}


@pytest.mark.parametrize(
    "name",
    [
        "connection_id",
        "call_leg_id",
        "call_session_id",
        "call_control_id",
        "from",
        "to",
        "conference_id",
    ],
)
async def test_equality_filters_match_exactly(sandbox, session, name: str) -> None:
    data = await all_recordings(sandbox, session)
    value = next(r[name] for r in data if name in r)
    got = await all_recordings(sandbox, session, **{f"filter[{name}]": value})
    assert got and [r["id"] for r in got] == [r["id"] for r in data if r.get(name) == value]


async def test_hidden_sip_call_id_and_conference_region_filters_work(sandbox, session) -> None:
    rid, hidden = next((k, v) for k, v in sandbox.state._hidden.items() if "conference_region" in v)
    got = await all_recordings(sandbox, session, **{"filter[sip_call_id]": hidden["sip_call_id"]})
    assert [r["id"] for r in got] == [rid]
    region = await all_recordings(
        sandbox, session, **{"filter[conference_region]": hidden["conference_region"]}
    )
    assert rid in {r["id"] for r in region}
    assert all(r["source"] == "conference" for r in region)


@pytest.mark.parametrize(
    "params",
    [
        {"page[size]": "251"},
        {"page[size]": "0"},
        {"page[number]": "0"},
        {"page[number]": "two"},
        {"filter[created_at][gte]": "yesterday"},
        {"filter[created_at][gt]": "2026-01-01T00:00:00Z"},
        {"filter[colour]": "red"},
        {"page[after]": "v1:abc"},
    ],
)
async def test_invalid_list_parameters_get_422_naming_the_parameter(
    sandbox, session, params
) -> None:
    status, body = await get_json(session, sandbox.base_url + "/recordings", params)
    assert status == 422
    assert body["errors"][0]["source"]["parameter"] == next(iter(params))


async def test_a_missing_or_wrong_key_gets_401_with_an_errors_body(sandbox) -> None:
    async with aiohttp.ClientSession() as anon:
        status, body = await get_json(anon, sandbox.base_url + "/recordings")
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer wrong"}) as wrong:
        status2, _ = await get_json(wrong, sandbox.base_url + "/recording_transcriptions")
    assert (status, status2) == (401, 401)
    assert body == {"errors": [{"code": "401", "title": "Unauthorized", "detail": "Unauthorized"}]}


async def test_the_api_key_is_configurable(sandbox_factory) -> None:
    async with (
        sandbox_factory(small_config(api_key="k2")) as sb,
        aiohttp.ClientSession(headers={"Authorization": "Bearer k2"}) as s,
    ):
        status, _ = await get_json(s, sb.base_url + "/recordings")
    assert status == 200


async def test_unknown_paths_and_ids_get_404_with_spec_error_codes(sandbox, session) -> None:
    status, body = await get_json(session, sandbox.base_url + "/nowhere")
    assert (status, body["errors"][0]["code"]) == (404, "404")
    status, body = await get_json(session, sandbox.base_url + "/recordings/no-such-id")
    assert (status, body["errors"][0]["code"]) == (404, "10005")


async def test_request_counts_are_kept_per_route_and_status(sandbox, session) -> None:
    await get_json(session, sandbox.base_url + "/recordings")
    await get_json(session, sandbox.base_url + "/recordings/nope")
    async with session.get(sandbox.url + "/_sandbox/state") as r:
        state = await r.json()
    assert state["requests"]["GET /recordings 200"] == 1
    assert state["requests"]["GET /recordings/{recording_id} 404"] == 1
    assert len(state["recordings"]["remaining"]) == 60


# -- deletion --------------------------------------------------------------------------------------
async def test_deleted_recordings_vanish_and_later_pages_shift(sandbox, session) -> None:
    url = sandbox.base_url + "/recordings"
    _, before = await get_json(session, url, {"page[size]": "10", "page[number]": "2"})
    first_of_page_3 = (await get_json(session, url, {"page[size]": "10", "page[number]": "3"}))[1]
    victim = before["data"][0]["id"]
    async with session.delete(f"{url}/{victim}") as r:
        assert r.status == 200 and (await r.json())["data"]["id"] == victim
    _, after = await get_json(session, url, {"page[size]": "10", "page[number]": "2"})
    assert victim not in {r["id"] for r in after["data"]}
    assert after["data"][-1]["id"] == first_of_page_3["data"][0]["id"]
    assert after["meta"]["total_results"] == 59
    async with session.get(f"{url}/{victim}") as r:
        assert r.status == 404
    async with session.delete(f"{url}/{victim}") as r:
        assert r.status == 404
    assert victim in sandbox.state.deleted_recording_ids
    _, state = await get_json(session, sandbox.url + "/_sandbox/state")
    assert state["recordings"]["deleted"] == [victim]
    assert victim not in state["recordings"]["remaining"]


async def test_bulk_delete_ignores_ids_already_gone(sandbox, session) -> None:
    ids = list(sandbox.state.recordings)[:3]
    async with session.post(
        sandbox.base_url + "/recordings/actions/delete", json={"ids": ids[:1]}
    ) as r:
        assert r.status == 200
    async with session.post(
        sandbox.base_url + "/recordings/actions/delete", json={"ids": [*ids, "never-existed"]}
    ) as r:
        assert (r.status, await r.json()) == (200, {"status": "ok"})
    assert set(ids) == sandbox.state.deleted_recording_ids
    assert len(sandbox.state.recordings) == 57


@pytest.mark.parametrize("body", [{}, {"ids": "abc"}, {"ids": [1, 2]}, ["abc"]])
async def test_bulk_delete_without_a_list_of_ids_gets_422(sandbox, session, body) -> None:
    async with session.post(sandbox.base_url + "/recordings/actions/delete", json=body) as r:
        assert r.status == 422
    assert not sandbox.state.deleted_recording_ids


async def test_deleting_a_recording_keeps_its_transcriptions(sandbox, session) -> None:
    tr = next(iter(sandbox.state.transcriptions.values()))
    async with session.delete(f"{sandbox.base_url}/recordings/{tr['recording_id']}") as r:
        assert r.status == 200
    status, body = await get_json(
        session, f"{sandbox.base_url}/recording_transcriptions/{tr['id']}"
    )
    assert status == 200 and body["data"]["recording_id"] == tr["recording_id"]


async def test_deleting_a_transcription_removes_only_it(sandbox, session) -> None:
    tr = next(iter(sandbox.state.transcriptions.values()))
    url = f"{sandbox.base_url}/recording_transcriptions/{tr['id']}"
    async with session.delete(url) as r:
        assert r.status == 200 and (await r.json())["data"]["id"] == tr["id"]
    async with session.get(url) as r:
        assert r.status == 404
    assert tr["recording_id"] in sandbox.state.recordings
    assert sandbox.state.deleted_transcription_ids == {tr["id"]}


# -- transcriptions: cursor and page-number pagination ----------------------------------------
async def follow_cursor(
    sb: SandboxServer, session: aiohttp.ClientSession, **params: str
) -> list[dict]:
    items: list[dict] = []
    url: str | None = sb.base_url + "/recording_transcriptions"
    query: dict[str, str] | None = {"page[size]": "7", **params}
    while url:
        status, body = await get_json(session, url, query)
        assert status == 200
        items += body["data"]
        nxt = body["meta"].get("next")
        url, query = (sb.url + nxt, None) if nxt else (None, None)
    return items


async def test_cursor_pages_walk_all_transcriptions_in_order(sandbox, session) -> None:
    items = await follow_cursor(sandbox, session)
    keys = [(t["created_at"], t["id"]) for t in items]
    assert keys == sorted(keys) and len(items) == len(sandbox.state.transcriptions)


async def test_cursor_next_links_keep_the_filters(sandbox, session) -> None:
    everything = await follow_cursor(sandbox, session)
    lo, hi = everything[3]["created_at"], everything[-4]["created_at"]
    got = await follow_cursor(
        sandbox, session, **{"filter[created_at][gte]": lo, "filter[created_at][lte]": hi}
    )
    assert [t["id"] for t in got] == [t["id"] for t in everything if lo <= t["created_at"] <= hi]


async def test_cursor_previous_link_returns_the_page_before(sandbox, session) -> None:
    url = sandbox.base_url + "/recording_transcriptions"
    _, first = await get_json(session, url, {"page[size]": "5"})
    assert "previous" not in first["meta"]
    _, second = await get_json(session, sandbox.url + first["meta"]["next"])
    _, back = await get_json(session, sandbox.url + second["meta"]["previous"])
    assert [t["id"] for t in back["data"]] == [t["id"] for t in first["data"]]


async def test_page_number_is_also_accepted_in_cursor_mode(sandbox, session) -> None:
    url = sandbox.base_url + "/recording_transcriptions"
    _, all_items = await get_json(session, url, {"page[size]": "250"})
    _, page2 = await get_json(session, url, {"page[size]": "5", "page[number]": "2"})
    assert [t["id"] for t in page2["data"]] == [t["id"] for t in all_items["data"][5:10]]
    assert "cursors" in page2["meta"]


async def test_a_garbled_cursor_gets_422(sandbox, session) -> None:
    status, body = await get_json(
        session, sandbox.base_url + "/recording_transcriptions", {"page[after]": "v1:%%%"}
    )
    assert status == 422 and body["errors"][0]["source"]["parameter"] == "page[after]"


async def test_transcriptions_filter_by_recording_id(sandbox, session) -> None:
    tr = next(iter(sandbox.state.transcriptions.values()))
    _, body = await get_json(
        session,
        sandbox.base_url + "/recording_transcriptions",
        {"filter[recording_id]": tr["recording_id"]},
    )
    assert [t["id"] for t in body["data"]] == [tr["id"]]


async def test_page_mode_lists_transcriptions_with_page_number_meta(sandbox_factory) -> None:
    async with (
        sandbox_factory(small_config(transcription_pagination="page")) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as s,
    ):
        _, body = await get_json(s, sb.base_url + "/recording_transcriptions", {"page[size]": "5"})
        status, _ = await get_json(
            s, sb.base_url + "/recording_transcriptions", {"page[after]": "v1:x"}
        )
    total = len(sb.state.transcriptions)
    assert body["meta"] == {
        "page_number": 1,
        "page_size": 5,
        "total_pages": -(-total // 5),
        "total_results": total,
    }
    assert status == 422


# -- the reason for the design: page numbers skip under deletion, cursors do not ---------------
async def naive_page_number_pager(
    session: aiohttp.ClientSession, url: str, params: dict[str, str], seen: asyncio.Queue
) -> list[str]:
    """Like the SDK's auto-pagination: page 1..total_pages, re-reading total_pages each time."""
    listed: list[str] = []
    number = 1
    while True:
        status, body = await get_json(session, url, {**params, "page[number]": str(number)})
        assert status == 200
        ids = [item["id"] for item in body["data"]]
        listed += ids
        await seen.put(ids)
        await seen.join()  # the archiver has deleted this page before we ask for the next
        if not ids or number >= body["meta"]["total_pages"]:
            return listed
        number += 1


async def deleter(session: aiohttp.ClientSession, url_for: Any, seen: asyncio.Queue) -> None:
    while True:
        ids = await seen.get()
        for ident in ids:
            async with session.delete(url_for(ident)) as r:
                assert r.status == 200
        seen.task_done()


async def test_page_number_paging_while_deleting_skips_recordings(sandbox, session) -> None:
    window = await all_recordings(sandbox, session)
    seen: asyncio.Queue = asyncio.Queue()
    task = asyncio.create_task(
        deleter(session, lambda i: f"{sandbox.base_url}/recordings/{i}", seen)
    )
    try:
        listed = await naive_page_number_pager(
            session, sandbox.base_url + "/recordings", {"page[size]": "10"}, seen
        )
    finally:
        task.cancel()
    skipped = {r["id"] for r in window} - set(listed)
    assert len(skipped) > 0
    assert skipped == set(sandbox.state.recordings)  # never seen, so never deleted


async def test_cursor_paging_while_deleting_skips_no_transcription(sandbox, session) -> None:
    expected = set(sandbox.state.transcriptions)
    listed: list[str] = []
    url: str | None = sandbox.base_url + "/recording_transcriptions?page[size]=7"
    while url:
        status, body = await get_json(session, url)
        assert status == 200
        for tr in body["data"]:
            listed.append(tr["id"])
            async with session.delete(
                f"{sandbox.base_url}/recording_transcriptions/{tr['id']}"
            ) as r:
                assert r.status == 200
        nxt = body["meta"].get("next")
        url = sandbox.url + nxt if nxt else None
    assert set(listed) == expected and len(listed) == len(expected)
    assert not sandbox.state.transcriptions


async def test_page_mode_transcriptions_skip_under_deletion_too(sandbox_factory) -> None:
    async with (
        sandbox_factory(small_config(transcription_pagination="page")) as sb,
        aiohttp.ClientSession(headers=auth(sb)) as s,
    ):
        expected = set(sb.state.transcriptions)
        seen: asyncio.Queue = asyncio.Queue()
        task = asyncio.create_task(
            deleter(s, lambda i: f"{sb.base_url}/recording_transcriptions/{i}", seen)
        )
        try:
            listed = await naive_page_number_pager(
                s, sb.base_url + "/recording_transcriptions", {"page[size]": "5"}, seen
            )
        finally:
            task.cancel()
    assert expected - set(listed)


# -- custom storage credentials -----------------------------------------------------------------
S3 = {
    "backend": "s3",
    "configuration": {
        "backend": "s3",
        "bucket": "rec",
        "region": "us-east-1",
        "aws_access_key_id": "AKIA",
        "aws_secret_access_key": "secret",
    },
}


async def test_credentials_are_created_read_updated_and_deleted(sandbox, session) -> None:
    conn = sandbox.state.connection_ids[1]
    url = f"{sandbox.base_url}/custom_storage_credentials/{conn}"
    async with session.get(url) as r:
        assert r.status == 404
    async with session.post(url, json=S3) as r:
        body = await r.json()
        assert r.status == 200
    assert body == {"connection_id": conn, "record_type": "custom_storage_credentials", "data": S3}
    azure = {
        "backend": "azure",
        "configuration": {"account_name": "a", "account_key": "k", "bucket": "c"},
    }
    async with session.put(url, json=azure) as r:
        assert r.status == 200
        assert (await r.json())["data"]["configuration"]["backend"] == "azure"
    _, got = await get_json(session, url)
    assert got["data"]["backend"] == "azure"
    async with session.delete(url) as r:
        assert r.status == 204 and await r.read() == b""
    async with session.delete(url) as r:
        assert r.status == 404
    assert conn not in sandbox.state.credentials


async def test_credentials_of_an_unknown_connection_get_404_pointing_at_it(
    sandbox, session
) -> None:
    status, body = await get_json(session, f"{sandbox.base_url}/custom_storage_credentials/123")
    assert status == 404
    assert body["errors"][0] == {
        "code": "10005",
        "title": "Resource not found",
        "detail": "The requested resource or URL could not be found.",
        "source": {"pointer": "/connection_id"},
    }


async def test_put_on_a_connection_without_credentials_gets_404(sandbox, session) -> None:
    url = f"{sandbox.base_url}/custom_storage_credentials/{sandbox.state.connection_ids[0]}"
    async with session.put(url, json=S3) as r:
        assert r.status == 404


@pytest.mark.parametrize(
    "body",
    [
        {"backend": "ftp", "configuration": {}},
        {"backend": "s3", "configuration": {"backend": "s3", "bucket": "b"}},
        {"backend": "s3", "configuration": {**S3["configuration"], "backend": "gcs"}},
        {
            "backend": "s3-generic",
            "configuration": {
                **S3["configuration"],
                "backend": "s3-generic",
                "endpoint": "s3.example.com",
            },
        },
        {"backend": "gcs"},
    ],
)
async def test_invalid_credentials_bodies_get_422(sandbox, session, body) -> None:
    url = f"{sandbox.base_url}/custom_storage_credentials/{sandbox.state.connection_ids[0]}"
    async with session.post(url, json=body) as r:
        assert r.status == 422
    assert not sandbox.state.credentials


async def test_credentials_from_config_name_connections_by_id_or_index(sandbox_factory) -> None:
    gcs = {"backend": "gcs", "configuration": {"bucket": "g", "credentials": "{}"}}
    probe = SandboxState(small_config())
    config = small_config(credentials={"#0": gcs, probe.connection_ids[2]: S3})
    async with sandbox_factory(config) as sb, aiohttp.ClientSession(headers=auth(sb)) as s:
        url = sb.base_url + "/custom_storage_credentials/"
        first = await get_json(s, url + sb.state.connection_ids[0])
        third = await get_json(s, url + sb.state.connection_ids[2])
        second = await get_json(s, url + sb.state.connection_ids[1])
    assert first[1]["data"]["configuration"] == {
        "backend": "gcs",
        "bucket": "g",
        "credentials": "{}",
    }
    assert third[1]["data"] == S3
    assert second[0] == 404
